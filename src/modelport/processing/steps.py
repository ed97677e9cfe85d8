"""Processing steps: typed, frozen descriptions of what happens before and after the graph.

A step is data (it is written into the manifest as ``{"kind": ..., **fields}`` and read back with
``step_from_dict``); the code that runs it lives in ``text.py``, ``image.py`` and ``post.py``.

    pre-processing (per request: request inputs -> graph inputs)
      tokenize     text (BYTES) -> input_ids / attention_mask / token_type_ids   (tokenizers)
      image        encoded images (BYTES) -> a float tensor [n, C, H, W] or [n, H, W, C]  (Pillow)
    post-processing (per merged batch, row by row: graph outputs -> answer)
      mean_pool    token embeddings + attention mask -> one vector per row
      cls_pool     the first token's embedding
      max_pool     the largest value over the unmasked tokens
      l2_normalize vectors scaled to unit length
      softmax      logits -> probabilities
      top_k        scores + a labels file -> ``label`` / ``score`` (top 1) or the k best

``STEPS`` maps a kind to its class: a plain dict, grep it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import PackageError, UsageError

__all__ = [
    "ClsPool",
    "ImagePreprocess",
    "L2Normalize",
    "MaxPool",
    "MeanPool",
    "STEPS",
    "Softmax",
    "Tokenize",
    "TopK",
    "step_from_dict",
    "step_to_dict",
]

RESAMPLE = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
LAYOUTS = ("NCHW", "NHWC")
MODES = ("L", "RGB")
TRUNCATION_SIDES = ("right", "left")


@dataclass(frozen=True)
class Tokenize:
    """Text in, token ids out, with the fast ``tokenizers`` library (no transformers at serve time).

    input: the request input holding the texts (BYTES, UTF-8), one text per row.
    file: the tokenizer's ``tokenizer.json``, relative to the package directory.
    max_length: texts longer than this many tokens (special tokens included) are truncated.
    truncation_side: which end is cut ("right" keeps the start, as Hugging Face does by default).
    pad_id / pad_type_id: what fills the rows of a merged batch up to its longest member.
    ids / mask / type_ids: the graph inputs to fill (``type_ids`` None: the graph takes none).
    """

    kind: ClassVar[str] = "tokenize"
    file: str
    max_length: int
    input: str = "text"
    truncation_side: str = "right"
    pad_id: int = 0
    pad_type_id: int = 0
    ids: str = "input_ids"
    mask: str | None = "attention_mask"
    type_ids: str | None = "token_type_ids"

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise UsageError(f"tokenize: max_length={self.max_length} must be at least 2")
        if self.truncation_side not in TRUNCATION_SIDES:
            raise UsageError(
                f"tokenize: truncation_side={self.truncation_side!r}; use one of {TRUNCATION_SIDES}"
            )


@dataclass(frozen=True)
class ImagePreprocess:
    """Encoded images in (PNG, JPEG, ... as BYTES), a float tensor out.

    Order: decode, convert to ``mode`` ("L" grayscale or "RGB"), resize to ``size`` (height,
    width) with ``resample``, optionally center-crop to ``crop``, multiply by ``scale``, then
    subtract ``mean`` and divide by ``std`` per channel (empty: skip), and lay out as ``layout``.

    input: the request input holding the images; output: the graph input to fill.
    max_pixels: larger images are refused before they are decoded (decompression bombs).
    """

    kind: ClassVar[str] = "image"
    size: tuple[int, int]
    output: str
    input: str = "image"
    mode: str = "RGB"
    resample: str = "bilinear"
    crop: tuple[int, int] | None = None
    scale: float = 1 / 255
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    layout: str = "NCHW"
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if self.crop is not None:
            object.__setattr__(self, "crop", tuple(int(s) for s in self.crop))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.size) != 2 or min(self.size) < 1:
            raise UsageError(f"image: size={self.size} must be (height, width), both >= 1")
        if self.crop is not None and (
            len(self.crop) != 2 or self.crop[0] > self.size[0] or self.crop[1] > self.size[1]
        ):
            raise UsageError(
                f"image: crop={self.crop} must be (height, width) no larger than size={self.size}"
            )
        if self.mode not in MODES:
            raise UsageError(f"image: mode={self.mode!r}; use one of {MODES}")
        if self.resample not in RESAMPLE:
            raise UsageError(f"image: resample={self.resample!r}; use one of {RESAMPLE}")
        if self.layout not in LAYOUTS:
            raise UsageError(f"image: layout={self.layout!r}; use one of {LAYOUTS}")
        channels = 1 if self.mode == "L" else 3
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v and len(v) not in (1, channels):
                raise UsageError(
                    f"image: {name} has {len(v)} values; give 1 or {channels} (one per channel "
                    f"of mode {self.mode})"
                )
        if bool(self.mean) != bool(self.std):
            raise UsageError("image: give mean and std together (or neither)")
        if self.std and any(s == 0 for s in self.std):
            raise UsageError("image: std values must not be 0")

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.crop or self.size


@dataclass(frozen=True)
class MeanPool:
    """Average of the token vectors where the attention mask is 1 (sentence-transformers' mean)."""

    kind: ClassVar[str] = "mean_pool"
    input: str = "last_hidden_state"
    mask: str = "attention_mask"
    output: str = "embedding"


@dataclass(frozen=True)
class ClsPool:
    """The first token's vector ([CLS])."""

    kind: ClassVar[str] = "cls_pool"
    input: str = "last_hidden_state"
    output: str = "embedding"


@dataclass(frozen=True)
class MaxPool:
    """The largest value over the tokens where the attention mask is 1."""

    kind: ClassVar[str] = "max_pool"
    input: str = "last_hidden_state"
    mask: str = "attention_mask"
    output: str = "embedding"


@dataclass(frozen=True)
class L2Normalize:
    """Rows scaled to unit L2 norm (``x / max(||x||, 1e-12)``, as torch's F.normalize)."""

    kind: ClassVar[str] = "l2_normalize"
    input: str = "embedding"
    output: str = "embedding"


@dataclass(frozen=True)
class Softmax:
    """Softmax over the last axis."""

    kind: ClassVar[str] = "softmax"
    input: str = "logits"
    output: str = "probabilities"


@dataclass(frozen=True)
class TopK:
    """The ``k`` best classes with their scores; names come from a labels file (line i = class i).

    With k == 1 the outputs are ``label`` [batch] and ``score`` [batch]; otherwise [batch, k].
    """

    kind: ClassVar[str] = "top_k"
    labels_file: str
    input: str = "probabilities"
    k: int = 1
    label_output: str = "label"
    score_output: str = "score"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UsageError(f"top_k: k={self.k} must be at least 1")


STEPS: dict[str, type] = {
    "tokenize": Tokenize,
    "image": ImagePreprocess,
    "mean_pool": MeanPool,
    "cls_pool": ClsPool,
    "max_pool": MaxPool,
    "l2_normalize": L2Normalize,
    "softmax": Softmax,
    "top_k": TopK,
}
PRE_KINDS = ("tokenize", "image")


def step_to_dict(step: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": step.kind}
    for f in dataclasses.fields(step):
        v = getattr(step, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def step_from_dict(data: Mapping[str, Any]) -> Any:
    """A step from its manifest form; PackageError for unknown kinds or fields."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise PackageError(f"a processing step must be an object with a 'kind', got {data!r}")
    kind = data["kind"]
    cls = STEPS.get(kind)
    if cls is None:
        raise PackageError(
            f"unknown processing step kind {kind!r}; this modelport knows {sorted(STEPS)} "
            "(was the package written by a newer version?)"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields) - {"kind"})
    if unknown:
        raise PackageError(f"processing step {kind!r} has unknown fields {unknown}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise PackageError(f"processing step {kind!r} is incomplete: {exc}") from None
    except UsageError as exc:
        raise PackageError(f"processing step {kind!r} is invalid: {exc.message}") from None
