"""Input data: load .npz/.npy/directories, and generate inputs from a signature.

Data on disk has a leading sample axis: an .npz holds one array per input name, an .npy holds the
single input of a one-input model, and a directory holds such files (concatenated in name order).
Generated inputs respect the meaning of common integer inputs: token ids stay within the
vocabulary, attention masks are ones (with a padded tail on some rows), token type ids are zeros.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, ModelportError, UsageError
from .signature import Signature, TensorSpec

if TYPE_CHECKING:
    from .package import ModelPackage

__all__ = [
    "Feed",
    "batches",
    "feed_batch_size",
    "generate_feed",
    "graph_value_ranges",
    "candidate_dims",
    "guess_dims",
    "load_feed",
    "package_feed",
    "recorded_dims",
    "rows_dim",
    "parse_input_spec",
    "parse_range",
    "split_batches",
    "take_rows",
]

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
        expected, got = exc.fields.get("expected"), exc.fields.get("got")
        if (
            source.endswith((".npz", ".npy"))  # a data file (not a request, not an in-memory feed)
            and isinstance(expected, list)
            and isinstance(got, list)
            and len(expected) == len(got) >= 1
            and expected[0] == 1
            and got[0] != 1
        ):  # a model fixed at batch 1 (a recurrent state, say): one sample per file
            where += (
                f"; the model takes one sample at a time on '{exc.fields.get('input')}' (its axis 0 "
                "is fixed at 1): give a directory of .npz files holding one sample each"
            )
        raise InputError(f"{exc.message}{where}", **exc.fields) from None
    return out


def feed_batch_size(feed: Mapping[str, np.ndarray]) -> int:
    sizes = {int(np.shape(a)[0]) for a in feed.values() if np.ndim(a) > 0}
    return max(sizes) if sizes else 1


def split_batches(feed: Mapping[str, np.ndarray], batch_size: int) -> Iterator[Feed]:
    """Slice a feed with a leading sample axis into batches of at most ``batch_size``."""
    n = feed_batch_size(feed)
    for start in range(0, n, batch_size):
        # a scalar input (a sample rate, a threshold) has no rows: every batch takes it whole
        yield {k: v[start : start + batch_size] if np.ndim(v) else v for k, v in feed.items()}


batches = split_batches


_VOCAB_HINTS = ("input_ids", "ids", "token", "tokens")
_MASK_HINTS = ("mask",)
_TYPE_HINTS = ("token_type", "segment")
_RATE_HINTS = ("sr", "sample_rate", "sampling_rate", "samplerate")


Range = tuple[float, float]  # [low, high): integers low..high-1, floats uniform


def generate_feed(
    signature: Signature,
    dims: Mapping[str, int] | None = None,
    *,
    seed: int = 0,
    vocab_size: int = 1000,
    default_dim: int = 1,
    ranges: Mapping[str, Range] | None = None,
) -> Feed:
    """Random inputs that fit ``signature``; symbolic dims come from ``dims`` (else ``default_dim``).

    Every symbolic dim name not in ``dims`` defaults to ``default_dim``. ``ranges`` gives the
    values of an input ([low, high): what ``--input name:shape:dtype:LOW..HIGH`` and
    ``graph_value_ranges`` give); other integer inputs are drawn in ranges that make sense for
    their role (ids < ``vocab_size``, masks of ones, type ids 0).
    """
    rng = np.random.default_rng(seed)
    dims = dict(dims or {})
    ranges = ranges or {}
    return {
        t.name: _random_tensor(t, dims, rng, vocab_size, default_dim, ranges.get(t.name))
        for t in signature.inputs
    }


def describe_generated(spec: TensorSpec, arr: np.ndarray, rng: Range | None = None) -> str:
    """How an input was generated, for messages ("int64 [2, 6] in [0, 1000)")."""
    arr = np.asarray(arr)
    what = f"{arr.dtype} {list(arr.shape)}"
    if arr.dtype.kind in "iu" and arr.size:
        if rng is not None:
            return f"{what} in [{rng[0]:g}, {rng[1]:g}) (given)"
        return f"{what} with values {int(arr.min())}..{int(arr.max())}"
    return what


def _random_tensor(
    spec: TensorSpec,
    dims: Mapping[str, int],
    rng: np.random.Generator,
    vocab_size: int,
    default_dim: int,
    value_range: Range | None = None,
) -> np.ndarray:
    shape = spec.concrete_shape(dims, default=default_dim)
    name = spec.name.lower()
    dtype = spec.dtype
    if value_range is not None and dtype not in ("str", "bool"):
        lo, hi = value_range
        if dtype.startswith("float"):
            return rng.uniform(lo, hi, size=shape).astype(dtype)
        return rng.integers(int(lo), max(int(hi), int(lo) + 1), size=shape).astype(dtype)
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
    if name in _RATE_HINTS and int(np.prod(shape)) <= 1:
        return np.full(shape, 16000, dtype=dtype)  # an audio model's sample rate
    if any(h in name for h in _VOCAB_HINTS):
        return rng.integers(0, vocab_size, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, 0), min(info.max, 10)
    return rng.integers(lo, hi, size=shape).astype(dtype)


def parse_range(text: str, what: str = "range") -> Range:
    """``"LOW..HIGH"`` -> (low, high), high excluded (``0..50`` is 0, 1, ..., 49)."""
    lo_s, sep, hi_s = text.partition("..")
    try:
        if not sep:
            raise ValueError
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        raise InputError(
            f"{what}: '{text}' is not a range; write LOW..HIGH, e.g. 0..50 (HIGH excluded)"
        ) from None
    if not hi > lo:
        raise InputError(f"{what}: range '{text}' is empty; HIGH must be greater than LOW")
    return lo, hi


def parse_input_spec(text: str, what: str = "input spec") -> tuple[TensorSpec, Range | None]:
    """Parse ``name:shape[:dtype[:LOW..HIGH]]``, e.g. ``ids:batch,6:int64:0..50``: the spec (dims
    are ints or names; dtype float32 when left out) and the value range of generated inputs
    ([LOW, HIGH), HIGH excluded), if given. UsageError, starting ``{what} '{text}'``, otherwise."""
    where = f"{what} '{text}'" if what else f"'{text}'"
    parts = text.split(":")
    if len(parts) not in (2, 3, 4) or not parts[0]:
        raise UsageError(
            f"{where}: expected name:shape:dtype[:LOW..HIGH], e.g. "
            "x:batch,3,32,32:float32 or ids:batch,16:int64:0..30522"
        )
    name, shape_s = parts[0], parts[1]
    dtype = parts[2] if len(parts) >= 3 and parts[2] else "float32"
    value_range = None
    if len(parts) == 4:
        try:
            value_range = parse_range(parts[3], where)
        except ModelportError as exc:
            raise UsageError(exc.message) from None
    try:
        np.dtype(dtype)
    except TypeError:
        raise UsageError(f"{where}: unknown dtype '{dtype}' (e.g. float32, int64)") from None
    dims: list[int | str] = []
    for d in filter(None, shape_s.split(",")):
        d = d.strip()
        dims.append(int(d) if d.lstrip("-").isdigit() else d)
    if any(isinstance(d, int) and d < 1 for d in dims):
        raise UsageError(f"{where}: fixed dims must be >= 1; use a name for a dynamic dim")
    return TensorSpec(name, str(np.dtype(dtype)), tuple(dims)), value_range


def take_rows(
    feed: Mapping[str, np.ndarray], rows: int, batched: Iterable[str] | None = None
) -> Feed:
    """``rows`` samples of ``feed`` along axis 0 (cut, or repeated when it holds fewer); inputs not
    in ``batched`` (when given) are passed unchanged."""
    keep = set(feed) if batched is None else set(batched)
    out: Feed = {}
    for name, arr in feed.items():
        arr = np.asarray(arr)
        if name not in keep or arr.ndim == 0 or arr.shape[0] == 0:
            out[name] = arr
            continue
        n = arr.shape[0]
        out[name] = arr[:rows] if n >= rows else np.take(arr, np.arange(rows) % n, axis=0)
    return out


# Pass-through ops: an integer input that reaches a Gather through these still indexes its table.
_PASS_THROUGH = {"Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand"}


def graph_value_ranges(model: Any) -> dict[str, Range]:
    """Value ranges the graph itself implies for its integer inputs.

    An input used as the indices of a ``Gather`` on a constant table (an embedding lookup) gets
    [0, rows); the indices of a ``OneHot`` get [0, depth). Inputs reach those ops directly or
    through shape-only ops (Cast, Reshape, Unsqueeze...). ``model`` is an ``onnx.ModelProto``;
    tensors stored as external data are not needed (only their dims are read).
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts: dict[str, Any] = {}
    for n in graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
    tables = {**inits, **consts}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, i))
    int_inputs = [
        vi.name
        for vi in graph.input
        if vi.name not in inits and vi.type.tensor_type.elem_type in (2, 3, 4, 5, 6, 7, 12, 13)
    ]
    out: dict[str, Range] = {}
    for name in int_inputs:
        highs: list[int] = []
        todo, seen = [name], set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            for node, idx in consumers.get(t, []):
                if node.op_type in _PASS_THROUGH and idx == 0:
                    todo.extend(node.output)
                elif node.op_type == "Gather" and idx == 1 and node.input[0] in tables:
                    dims = list(tables[node.input[0]].dims)
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    if dims:
                        highs.append(int(dims[axis % len(dims)]))
                elif node.op_type == "OneHot" and idx == 0 and node.input[1] in tables:
                    depth = _scalar(tables[node.input[1]])
                    if depth is not None:
                        highs.append(int(depth))
        if highs and min(highs) > 0:
            out[name] = (0.0, float(min(highs)))
    return out


def _scalar(tensor: Any) -> float | None:
    try:
        from onnx import numpy_helper

        arr = numpy_helper.to_array(tensor)
    except Exception:  # external data not loaded, odd types: no range from it
        return None
    return float(arr.reshape(-1)[0]) if arr.size else None


# Other image sizes to try when 224 x 224 is refused: text-line recognizers (48 or 32 high),
# detectors trained at 640.
_IMAGE_SIZES = ((224, 224), (48, 320), (32, 320), (640, 640))


def guess_dims(
    signature: Signature, batch: int = 1, image: tuple[int, int] = (224, 224)
) -> dict[str, int]:
    """Sizes for symbolic dims that a model of this kind accepts, for when no real data exists.

    Image-like inputs ([N, 1|3, H, W] or [N, H, W, 1|3]) get ``image`` (224 x 224); integer
    [N, S] inputs (token ids) and other [N, S, ...] sequences get 128; float [N, T] and
    [N, 1|2, T] inputs (audio) get 512 samples; axis 0 gets ``batch``; any other dim 1 (often a
    batch axis elsewhere, as in a recurrent state [layers, N, hidden]).
    """
    sizes: dict[str, int] = {}

    def put(dim: Any, n: int) -> None:
        if isinstance(dim, str):
            sizes.setdefault(dim, n)

    for t in signature.inputs:
        shape, rank = t.shape, len(t.shape)
        if rank:
            put(shape[0], batch)
        batched = rank >= 2 and isinstance(shape[0], str)
        if rank == 4 and shape[1] in (1, 3, 4):
            put(shape[2], image[0])
            put(shape[3], image[1])
        elif rank == 4 and shape[3] in (1, 3, 4):
            put(shape[1], image[0])
            put(shape[2], image[1])
        elif rank == 2 and t.dtype.startswith("float") and batched:
            put(shape[1], 512)
        elif rank == 3 and t.dtype.startswith("float") and shape[1] in (1, 2):
            put(shape[2], 512)
        elif batched:
            put(shape[1], 128)
    for t in signature.inputs:
        for d in t.shape:
            put(d, 1)
    return sizes


def candidate_dims(signature: Signature, batch: int = 1) -> list[dict[str, int]]:
    """``guess_dims`` first, then other image sizes when the model has image-like inputs."""
    first = guess_dims(signature, batch)
    out = [first]
    for size in _IMAGE_SIZES[1:]:
        other = guess_dims(signature, batch, image=size)
        if other not in out:
            out.append(other)
    return out


def rows_dim(signature: Signature) -> str | None:
    """The dynamic axis 0 every input shares (the rows of a feed), or None: an input without it
    (a scalar, a recurrent state [layers, N, hidden], a fixed batch of 1) means the model's
    feeds cannot be cut or tiled to another number of rows."""
    firsts = {t.shape[0] if t.shape else None for t in signature.inputs}
    first = next(iter(firsts)) if len(firsts) == 1 else None
    return first if isinstance(first, str) else None


def recorded_dims(package: ModelPackage) -> dict[str, int]:
    """The sizes of the symbolic dims the package's conversion ran at (its first verification
    case that ran), or {} when it has none.

    A model found to take only some sizes at conversion (a text recognizer whose height must be
    48, not the first guess of 224) is run at those sizes again by verify, bench and quantize
    when it stores no samples.
    """
    verification = package.spec.verification
    if verification is None:
        return {}
    sig = package.signature
    for case in verification.cases:
        shapes = case.get("input_shapes")
        if case.get("error") or case.get("skipped") or not isinstance(shapes, Mapping):
            continue
        out: dict[str, int] = {}
        for t in sig.inputs:
            shape = shapes.get(t.name)
            if not isinstance(shape, list) or len(shape) != len(t.shape):
                return {}
            for d, n in zip(t.shape, shape, strict=True):
                if isinstance(d, str) and isinstance(n, int) and n >= 1:
                    out.setdefault(d, n)
        return out
    return {}


def package_feed(
    package: ModelPackage,
    batch: int | None = None,
    dims: Mapping[str, int] | None = None,
    *,
    seed: int = 0,
) -> tuple[Feed, str]:
    """Inputs for running a package when no data was given, and where they came from.

    ``batch`` is ignored for a model whose inputs do not share a dynamic axis 0 (``rows_dim``).
    Real data first: the package's stored samples (cut or repeated to ``batch`` rows), unless
    ``dims`` asks for other sizes. Otherwise generated inputs at the sizes its conversion ran at
    (``recorded_dims``), else sizes a model of its kind takes (``guess_dims``), overridden by
    ``dims``; integer inputs within the ranges the graph implies.
    """
    sig = package.signature
    if rows_dim(sig) is None:
        batch = None  # rows cannot be cut or stacked: the sizes it was converted at
    stored = package.samples()
    if not dims and stored is not None and stored[0]:
        feed = dict(stored[0])
        return (take_rows(feed, batch) if batch else feed), "the package's stored samples"
    sizes = guess_dims(sig, batch or 1)
    sizes.update(recorded_dims(package))
    sizes.update(dims or {})
    bdim = next((t.shape[0] for t in sig.inputs if t.shape and isinstance(t.shape[0], str)), None)
    if batch and bdim:
        sizes[bdim] = batch
    ranges: dict[str, Range] = {}
    try:
        import onnx

        ranges = graph_value_ranges(onnx.load(str(package.model_path), load_external_data=False))
    except Exception:  # a hint only
        pass
    return generate_feed(sig, sizes, seed=seed, ranges=ranges), "generated inputs"
