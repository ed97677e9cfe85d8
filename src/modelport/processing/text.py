"""Text pre-processing with the fast ``tokenizers`` library (Rust; no transformers import).

Each request is tokenized on its own without padding (``encode``); rows of a merged batch are
padded only to the batch's longest member when the batch is collated (``collate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, PackageError, require
from .steps import Tokenize

__all__ = ["TextTokenizer", "as_texts", "batch_rows"]


def batch_rows(name: str, values: Any, what: str) -> list[Any]:
    """A request's BYTES values one per row: a scalar, [n] or [n, 1] -> a list of n elements.
    ``what`` names the elements in the error ("texts", "images as encoded files")."""
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError(
            f"input '{name}' has shape {list(arr.shape)}; send {what} as a 1-D batch [n] "
            "(or [n, 1]), one per row (BYTES)",
            input=name,
        )
    return arr.tolist()


def as_texts(name: str, values: Any) -> list[str]:
    """A request's texts: a 1-D (or [n, 1]) array or list of str/UTF-8 bytes."""
    out = []
    for i, x in enumerate(batch_rows(name, values, "texts")):
        if isinstance(x, bytes):
            try:
                x = x.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(
                    f"input '{name}' row {i} is not UTF-8 text; send texts as UTF-8", input=name
                ) from None
        elif not isinstance(x, str):
            raise InputError(
                f"input '{name}' row {i} is a {type(x).__name__}, not text; send strings "
                "(datatype BYTES)",
                input=name,
            )
        out.append(x)
    return out


class TextTokenizer:
    """A ``Tokenize`` step, loaded: ``encode`` per request, ``collate`` per merged batch."""

    def __init__(self, step: Tokenize, base: Path) -> None:
        tokenizers = require("tokenizers", "serve")
        path = base / step.file
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:
            raise PackageError(
                f"cannot load the tokenizer {path}: {exc}; the package is incomplete, convert "
                "the model again",
                path=str(path),
            ) from exc
        tok.no_padding()
        tok.enable_truncation(step.max_length, direction=step.truncation_side)
        self.step = step
        self.tokenizer = tok

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Token ids per text (ragged: object arrays of 1-D int64 arrays), unpadded."""
        step = self.step
        if len(texts) == 1:
            encodings = [self.tokenizer.encode(texts[0])]
        else:
            encodings = self.tokenizer.encode_batch(texts)
        ids = np.empty(len(texts), dtype=object)
        ids[:] = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        out = {step.ids: ids}
        if step.type_ids:
            types = np.empty(len(texts), dtype=object)
            types[:] = [np.asarray(e.type_ids, dtype=np.int64) for e in encodings]
            out[step.type_ids] = types
        return out

    def collate(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Pad the ragged rows to the longest one; adds the attention mask."""
        step = self.step
        rows = feed[step.ids]
        lengths = [len(r) for r in rows]
        width = max(lengths) if lengths else 0
        ids = np.full((len(rows), width), step.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        out = {step.ids: ids}
        if step.mask:
            out[step.mask] = mask
        if step.type_ids:
            types = np.full((len(rows), width), step.pad_type_id, dtype=np.int64)
            for i, r in enumerate(feed[step.type_ids]):
                types[i, : len(r)] = r
            out[step.type_ids] = types
        return out
