#!/usr/bin/env bash
# The main job end to end on a model that ships in the repo (examples/digits_cnn.py):
# train a small CNN on scikit-learn's digits, convert it to a verified ONNX package, inspect it.
set -euo pipefail
OUT=build/demo
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. train a small CNN on scikit-learn's bundled digits (a few seconds)"
python -m examples.digits_cnn "$OUT"

echo "== 2. convert: state_dict + class -> verified ONNX package"
modelport convert --torch examples.digits_cnn:DigitsCNN --weights "$OUT/digits_cnn.pt" \
  --example-inputs "$OUT/digits_test.npz" -o "$OUT/digits-cnn"

echo "== 3. inspect the package"
modelport inspect "$OUT/digits-cnn"

echo "== 4. verify it again (checker, integrity, stored source outputs, batch consistency)"
modelport verify "$OUT/digits-cnn"
