"""Calibration and evaluation data, streamed in batches and checked against the model's signature.

Data is a path (.npz / .npy / a directory of them), an in-memory feed (name -> array with a
leading sample axis) or, from Python, any iterable of such feeds. A directory is read one file at
a time and an iterable one item at a time, so calibration memory stays bounded by the batch size
and the number of batches ONNX Runtime keeps before it folds them into ranges (``chunk``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Feed, conform_feed, load_feed, split_batches
from ..errors import InputError, OptimizationError, UsageError
from ..signature import Signature

__all__ = ["DataSource", "calibrate_ranges", "check_data", "iter_batches", "take_feed"]

DataSource = str | os.PathLike[str] | Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def iter_batches(
    data: DataSource, signature: Signature, batch_size: int, limit: int | None = None
) -> Iterator[Feed]:
    """Batches of at most ``batch_size`` samples from ``data``, each checked against ``signature``.

    ``limit`` caps the total number of samples. A mismatch (missing or unknown input name, wrong
    dtype, wrong fixed dim) raises InputError naming the input and what was expected.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1 (got {batch_size})")
    yield from _split(_feeds(data, signature), batch_size, limit)


def check_data(data: DataSource | None, signature: Signature) -> None:
    """Check path ``data`` against ``signature`` now (its first file only), so that a wrong name,
    dtype or shape is reported before slow steps (pre-processing, quantization, timing) run.

    In-memory feeds and iterables are left to the step that reads them (an iterable may be
    one-shot). Raises InputError naming the input, as reading the data later would.
    """
    if isinstance(data, str | os.PathLike):
        next(_feeds(data, signature), None)


def _split(feeds: Iterable[Feed], batch_size: int, limit: int | None) -> Iterator[Feed]:
    seen = 0
    for feed in feeds:
        for b in split_batches(feed, batch_size):
            if limit is not None:
                n = _rows(b)
                if seen >= limit:
                    return
                if seen + n > limit:
                    b = {k: v[: limit - seen] if np.ndim(v) else v for k, v in b.items()}
                seen += _rows(b)
            else:
                seen += _rows(b)
            yield b


def _rows(feed: Feed) -> int:
    # the first input with an axis: a scalar input (a sample rate) has no rows
    return next((int(np.shape(v)[0]) for v in feed.values() if np.ndim(v)), 1) if feed else 0


def _feeds(data: DataSource, signature: Signature) -> Iterator[Feed]:
    if isinstance(data, str | os.PathLike):
        p = Path(data)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".npz", ".npy"))
            if not files:
                raise InputError(f"data directory '{p}' holds no .npz or .npy files", path=str(p))
            for f in files:
                yield load_feed(f, signature)
        else:
            yield load_feed(p, signature)
        return
    if isinstance(data, Mapping):
        yield conform_feed(data, signature, source="the given feed")
        return
    if isinstance(data, np.ndarray):
        if len(signature.inputs) != 1:
            raise InputError(
                f"a bare array was given but the model has {len(signature.inputs)} inputs "
                f"{signature.input_names}; give a mapping of input name -> array"
            )
        yield conform_feed({signature.inputs[0].name: data}, signature, source="the given array")
        return
    try:
        items = iter(data)
    except TypeError:
        raise UsageError(
            f"data must be a path, a mapping of input name -> array or an iterable of such "
            f"mappings (got {type(data).__name__})"
        ) from None
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InputError(
                f"item {i} of the data iterable is a {type(item).__name__}; each item must map "
                f"input names {signature.input_names} to arrays with a leading sample axis"
            )
        yield conform_feed(item, signature, source=f"item {i} of the data iterable")


def take_feed(data: DataSource, signature: Signature, limit: int | None = None) -> Feed:
    """All of ``data`` (up to ``limit`` samples) as one feed; for evaluation sets, which are small.

    Sequence-like inputs of different lengths (token ids of several files) are right-padded
    with zeros to the longest, which is what tokenizers do for attention masks and ids.
    """
    parts = list(iter_batches(data, signature, batch_size=1 << 30, limit=limit))
    if not parts:
        raise InputError("the data holds no samples")
    if len(parts) == 1:
        return parts[0]
    out: Feed = {}
    for name in parts[0]:
        arrays = [p[name] for p in parts]
        width = max(a.shape[1] for a in arrays) if arrays[0].ndim >= 2 else None
        if width is not None and any(a.shape[1] != width for a in arrays):
            arrays = [
                np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2))
                for a in arrays
            ]
        out[name] = np.concatenate(arrays)
    return out


def calibrate_ranges(
    model_path: str | os.PathLike[str],
    data: DataSource,
    signature: Signature,
    *,
    method: str = "minmax",
    batch_size: int | None = None,
    limit: int | None = None,
    chunk: int = 8,
    work_dir: str | os.PathLike[str],
    percentile: float = 99.999,
) -> tuple[Any, int]:
    """Calibrate activation ranges of ``model_path`` on ``data``; return (TensorsData, samples).

    Batches are fed to ONNX Runtime's calibrator ``chunk`` at a time, and each chunk is folded
    into the running ranges / histograms before the next one is read, so memory stays bounded
    whatever the size of the calibration set (ONNX Runtime's own loop keeps every intermediate
    output of every batch for the histogram methods).
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    if method not in CALIBRATION_METHODS:
        raise UsageError(f"calibration method '{method}' is not one of {list(CALIBRATION_METHODS)}")
    ort_method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    extra: dict[str, Any] = {}
    if method == "percentile":
        extra["percentile"] = percentile
    calibrator = create_calibrator(
        Path(model_path),
        augmented_model_path=str(Path(work_dir) / "augmented.onnx"),
        calibrate_method=ort_method,
        use_external_data_format=False,
        extra_options=extra,
    )
    import itertools

    feeds = _feeds(data, signature)
    first = next(feeds, None)  # read once: ``data`` may be a one-shot iterable
    if batch_size is None:
        # as many samples per run as keep one run's activations small: 8 small inputs, one
        # 960x960 image (ONNX Runtime holds every activation of a batch while it runs it)
        from .report import eval_batch_rows

        batch_size = min(8, eval_batch_rows(first)) if first else 8
        if batch_size < 8:
            # large inputs: fold every batch in at once. ONNX Runtime's calibrators keep what
            # each run of a chunk returns until the chunk is folded in (measured, OCR detector at
            # 960x960, 16 images: 3.35 GB peak with chunks of 8, 1.75 GB with chunks of 1)
            chunk = 1
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1 (got {batch_size})")
    sources = itertools.chain([first], feeds) if first is not None else iter(())
    batches = _split(sources, batch_size, limit)
    if first is not None:
        _lean_session(calibrator, first, batch_size)
    count = 0

    class _ListReader(CalibrationDataReader):  # type: ignore[misc]  # ORT ships no types
        def __init__(self, items: list[Feed]) -> None:
            self.items = iter(items)

        def get_next(self) -> Feed | None:
            return next(self.items, None)

    from ..progress import progress

    total = count_samples(data)
    if total is not None and limit is not None:
        total = min(total, limit)
    with progress(f"calibration ({method}), samples", total=total) as bar:
        while True:
            part = [b for _, b in zip(range(chunk), batches, strict=False)]
            if not part:
                break
            count += sum(_rows(b) for b in part)
            try:
                calibrator.collect_data(_ListReader(part))
            except ValueError as exc:
                raise OptimizationError(
                    f"{method} calibration failed in ONNX Runtime: {exc}. The histogram methods "
                    "break on tensors with huge ranges (e.g. transformer attention masks filled "
                    "with the float minimum); use method 'minmax' for this model"
                ) from exc
            except Exception as exc:
                if not type(exc).__module__.startswith("onnxruntime"):
                    raise
                msg = str(exc).split("Status Message:")[-1].strip().splitlines()[0][:300]
                raise InputError(
                    f"the model rejected the calibration data ({msg}): every array's axis 0 is "
                    "read as the sample axis and batches of several samples are run together; "
                    "for a model whose inputs do not all batch on axis 0 (a recurrent state, a "
                    "scalar), give a directory of .npz files holding one sample each"
                ) from None
            bar.advance(sum(_rows(b) for b in part))
    if count == 0:
        raise InputError("the calibration data holds no samples")
    ranges = calibrator.compute_data()
    del calibrator
    return ranges, count


def count_samples(data: DataSource) -> int | None:
    """How many samples ``data`` holds, when that is cheap to tell (array headers only)."""
    import zipfile

    try:
        if isinstance(data, Mapping):
            return _rows(dict(data)) if data else 0
        if not isinstance(data, str | os.PathLike):
            return None
        p = Path(data)
        if p.is_dir():
            counts = [count_samples(f) for f in sorted(p.iterdir()) if f.suffix in (".npz", ".npy")]
            return None if any(c is None for c in counts) else sum(c or 0 for c in counts)
        if p.suffix == ".npy":
            return int(np.load(p, mmap_mode="r").shape[0])
        if p.suffix == ".npz":
            with zipfile.ZipFile(p) as z:
                name = next(n for n in z.namelist() if n.endswith(".npy"))
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape = read(f)[0]
                    return int(shape[0]) if shape else 1
    except Exception:  # a count is a nicety for the progress bar
        return None
    return None


def _lean_session(calibrator: Any, first: Feed, batch_size: int) -> None:
    """For large inputs, rebuild the calibrator's session without ONNX Runtime's memory arena and
    memory patterns: the augmented model outputs a reduction of every tensor, and the arena would
    keep the peak of those runs (measured on a 4.7 MB OCR detector at 960x960: 3.7 GB -> 1.8 GB)."""
    from ..runtime import SessionConfig, make_session

    rows = max(1, _rows(first))
    if batch_size * sum(np.asarray(v).nbytes for v in first.values()) / rows < (1 << 20):
        return
    path = getattr(calibrator, "augmented_model_path", None)
    if getattr(calibrator, "infer_session", None) is None or path is None:
        return
    calibrator.infer_session = None  # free the old session first
    calibrator.infer_session = make_session(
        str(path), SessionConfig(graph_optimization="disable", memory_arena=False)
    )
