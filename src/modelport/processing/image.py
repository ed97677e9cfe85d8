"""Image pre-processing with Pillow: decode, convert, resize, crop, scale, normalize, lay out.

Also reads Hugging Face image processor configs (``preprocessor_config.json``) into an
``ImagePreprocess`` step.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, UsageError, require
from .steps import ImagePreprocess

__all__ = ["ImageDecoder", "from_hf_image_processor", "encode_png"]

# PIL's integer resample codes (as HF configs store them) -> our names
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class ImageDecoder:
    """An ``ImagePreprocess`` step, loaded: ``decode`` turns encoded images into one tensor."""

    def __init__(self, step: ImagePreprocess) -> None:
        self.pil = require("PIL.Image", "serve")
        self.step = step
        self._resample = getattr(self.pil.Resampling, step.resample.upper())
        c = step.channels
        self._mean = np.asarray(step.mean or [0.0] * c, np.float32).reshape(1, 1, -1)
        self._std = np.asarray(step.std or [1.0] * c, np.float32).reshape(1, 1, -1)

    def one(self, data: Any, row: int) -> np.ndarray:
        step = self.step
        if not isinstance(data, bytes | bytearray):
            raise InputError(
                f"input '{step.input}' row {row} is a {type(data).__name__}; send the encoded "
                "image file (PNG, JPEG, ...) as BYTES",
                input=step.input,
            )
        Image = self.pil
        try:
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > step.max_pixels:
                raise InputError(
                    f"input '{step.input}' row {row} is {w}x{h} pixels, over the limit of "
                    f"{step.max_pixels}; send a smaller image",
                    input=step.input,
                )
            img = img.convert(step.mode)
        except InputError:
            raise
        except Exception as exc:  # UnidentifiedImageError, truncated files, ...
            raise InputError(
                f"input '{step.input}' row {row} is not a readable image ({exc}); send the bytes "
                "of a PNG, JPEG, BMP, GIF or WebP file",
                input=step.input,
            ) from None
        height, width = step.size
        if img.size != (width, height):
            img = img.resize((width, height), self._resample)
        if step.crop is not None:
            ch, cw = step.crop
            top, left = (height - ch) // 2, (width - cw) // 2
            img = img.crop((left, top, left + cw, top + ch))
        arr = np.asarray(img, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        arr = (arr * np.float32(step.scale) - self._mean) / self._std
        return arr.transpose(2, 0, 1) if step.layout == "NCHW" else arr

    def decode(self, rows: list[Any]) -> np.ndarray:
        """[n, C, H, W] (or [n, H, W, C]) float32 for the encoded images ``rows``."""
        arrays = [self.one(x, i) for i, x in enumerate(rows)]
        if not arrays:
            h, w = self.step.out_hw
            c = self.step.channels
            return np.zeros((0, c, h, w) if self.step.layout == "NCHW" else (0, h, w, c), "f4")
        return np.stack(arrays).astype(np.float32, copy=False)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image [H, W] (grayscale) or [H, W, 3] (RGB)."""
    Image = require("PIL.Image", "serve")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return buf.getvalue()


def from_hf_image_processor(config: Mapping[str, Any], output: str) -> ImagePreprocess:
    """An ``ImagePreprocess`` equivalent to a Hugging Face image processor config.

    Supports the common fields: do_resize + size ({height, width} or {shortest_edge}),
    resample, do_center_crop + crop_size, do_rescale + rescale_factor, do_normalize +
    image_mean/image_std. Anything else that changes pixels is refused with a clear error.
    """
    unsupported = [k for k in ("do_pad", "do_reduce_labels") if config.get(k)]
    if unsupported:
        raise UsageError(
            f"the image processor config sets {unsupported}, which modelport cannot do"
        )
    size = config.get("size") or {}
    if isinstance(size, int):
        size = {"height": size, "width": size}
    crop = None
    if config.get("do_center_crop") and config.get("crop_size"):
        cs = config["crop_size"]
        crop = (cs, cs) if isinstance(cs, int) else (int(cs["height"]), int(cs["width"]))
    if "height" in size and "width" in size:
        hw = (int(size["height"]), int(size["width"]))
    elif "shortest_edge" in size:
        if crop is None:
            raise UsageError(
                "the image processor resizes by shortest_edge without a center crop, so the "
                "tensor size depends on each image; modelport needs a fixed size"
            )
        # images are assumed square-ish: shortest_edge x shortest_edge, then the crop
        hw = (int(size["shortest_edge"]), int(size["shortest_edge"]))
    else:
        raise UsageError(f"cannot read the image size from the processor config: size={size!r}")
    if not config.get("do_resize", True):
        raise UsageError("the image processor does not resize; modelport needs a fixed size")
    scale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
    normalize = config.get("do_normalize", True)
    mean = tuple(config.get("image_mean") or ()) if normalize else ()
    std = tuple(config.get("image_std") or ()) if normalize else ()
    return ImagePreprocess(
        size=hw,
        output=output,
        mode="RGB",
        resample=_PIL_RESAMPLE.get(int(config.get("resample", 2)), "bilinear"),
        crop=crop,
        scale=scale,
        mean=mean,
        std=std,
        layout="NCHW",
    )
