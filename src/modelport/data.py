"""Input data: load .npz/.npy/directories, and generate inputs from a signature.

Data on disk has a leading sample axis: an .npz holds one array per input name, an .npy holds the
single input of a one-input model, and a directory holds such files (concatenated in name order).
Generated inputs respect the meaning of common integer inputs: token ids stay within the
vocabulary, attention masks are ones (with a padded tail on some rows), token type ids are zeros.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from .errors import InputError
from .signature import Signature, TensorSpec

__all__ = ["Feed", "batches", "generate_feed", "load_feed", "split_batches", "feed_batch_size"]

Feed = dict[str, np.ndarray]


def load_feed(path: str | os.PathLike[str], signature: Signature | None = None) -> Feed:
    """Load input data from ``.npz``, ``.npy`` or a directory of those, checked against ``signature``.

    Float64 data is cast to float32 when the model wants float32 (a common numpy default);
    any other mismatch is an error naming the input.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"data path '{p}' does not exist", path=str(p))
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in (".npz", ".npy"))
        if not files:
            raise InputError(f"data directory '{p}' holds no .npz or .npy files", path=str(p))
        parts = [load_feed(f, signature) for f in files]
        return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                feed = {k: z[k] for k in z.files}
        elif p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
            if signature is None or len(signature.inputs) != 1:
                n = "unknown" if signature is None else len(signature.inputs)
                raise InputError(
                    f"'{p}' is a single .npy array but the model has {n} inputs; "
                    "use an .npz with one array per input name",
                    path=str(p),
                )
            feed = {signature.inputs[0].name: arr}
        else:
            raise InputError(
                f"'{p}': unsupported data file; use .npz (one array per input) or .npy",
                path=str(p),
            )
    except ValueError as exc:  # e.g. pickled object arrays
        raise InputError(f"cannot read '{p}': {exc}", path=str(p)) from exc
    if signature is not None:
        feed = conform_feed(feed, signature, source=str(p))
    return feed


def conform_feed(feed: Mapping[str, np.ndarray], signature: Signature, source: str = "") -> Feed:
    """Cast float64->float32 / int32->int64 where the model expects it, then check the feed."""
    out: Feed = {}
    for name, arr in feed.items():
        arr = np.asarray(arr)
        if name in signature.input_names:
            want = signature.input(name).dtype
            if want == "float32" and arr.dtype == np.float64:
                arr = arr.astype(np.float32)
            elif want == "int64" and arr.dtype in (np.int32, np.int16, np.int8, np.uint8):
                arr = arr.astype(np.int64)
        out[name] = arr
    try:
        signature.check_feed(out)
    except InputError as exc:
        where = f" in {source}" if source else ""
        raise InputError(f"{exc.message}{where}", **exc.fields) from None
    return out


def feed_batch_size(feed: Mapping[str, np.ndarray]) -> int:
    sizes = {int(np.shape(a)[0]) for a in feed.values() if np.ndim(a) > 0}
    return max(sizes) if sizes else 1


def split_batches(feed: Mapping[str, np.ndarray], batch_size: int) -> Iterator[Feed]:
    """Slice a feed with a leading sample axis into batches of at most ``batch_size``."""
    n = feed_batch_size(feed)
    for start in range(0, n, batch_size):
        yield {k: v[start : start + batch_size] for k, v in feed.items()}


batches = split_batches


_VOCAB_HINTS = ("input_ids", "ids", "token", "tokens")
_MASK_HINTS = ("mask",)
_TYPE_HINTS = ("token_type", "segment")


def generate_feed(
    signature: Signature,
    dims: Mapping[str, int] | None = None,
    *,
    seed: int = 0,
    vocab_size: int = 1000,
    default_dim: int = 1,
) -> Feed:
    """Random inputs that fit ``signature``; symbolic dims come from ``dims`` (else ``default_dim``).

    Every symbolic dim name not in ``dims`` defaults to ``default_dim``; integer inputs are drawn
    in ranges that make sense for their role (ids < ``vocab_size``, masks of ones, type ids 0).
    """
    rng = np.random.default_rng(seed)
    dims = dict(dims or {})
    return {t.name: _random_tensor(t, dims, rng, vocab_size, default_dim) for t in signature.inputs}


def _random_tensor(
    spec: TensorSpec,
    dims: Mapping[str, int],
    rng: np.random.Generator,
    vocab_size: int,
    default_dim: int,
) -> np.ndarray:
    shape = spec.concrete_shape(dims, default=default_dim)
    name = spec.name.lower()
    dtype = spec.dtype
    if dtype == "str":
        return np.array([f"text {i}" for i in range(int(np.prod(shape)))], dtype=object).reshape(
            shape
        )
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    # integers
    if any(h in name for h in _MASK_HINTS):
        arr = np.ones(shape, dtype=dtype)
        if len(shape) == 2 and shape[0] > 1 and shape[1] > 2:
            arr[-1, shape[1] // 2 :] = 0  # one padded row, as real batches have
        return arr
    if any(h in name for h in _TYPE_HINTS):
        return np.zeros(shape, dtype=dtype)
    if any(h in name for h in _VOCAB_HINTS):
        return rng.integers(0, vocab_size, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, 0), min(info.max, 10)
    return rng.integers(lo, hi, size=shape).astype(dtype)
