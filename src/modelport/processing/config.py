"""What to add to a package's processing at convert time (``convert --image-preprocess ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .steps import ImagePreprocess

__all__ = ["ProcessingConfig", "parse_image_spec", "read_label_file"]


@dataclass(frozen=True)
class ProcessingConfig:
    """Processing to write into the package besides what the converter finds by itself
    (``convert --hf`` finds the tokenizer, pooling and labels on its own).

    image: pre-processing for a model whose one input is an image tensor; its ``output`` may
        be "" (= the graph's only input).
    labels: class names, index i = class i: the answer becomes ``label``/``score``.
    top_k: how many classes to answer (1: ``label`` [batch]; k: ``label`` [batch, k]).
    softmax: apply softmax to the output before top-k (False when it already holds
        probabilities).
    handler: a custom handler "module:Class" (or "path/to/file.py:Class") to ship.
    texts: real sentences for the end-to-end check of text models (None: a built-in set).
    """

    image: ImagePreprocess | None = None
    labels: tuple[str, ...] | None = None
    top_k: int = 1
    softmax: bool = True
    handler: str | None = None
    texts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise UsageError(f"top_k={self.top_k} must be at least 1")
        if self.labels is not None and len(self.labels) < 1:
            raise UsageError("labels is empty; give one class name per line")
        if self.labels is not None and self.top_k > len(self.labels):
            raise UsageError(f"top_k={self.top_k} is more than the {len(self.labels)} labels")


def read_label_file(path: str | Path) -> tuple[str, ...]:
    """Class names, one per line (line i = class i); a JSON list or {"0": name} object too."""
    import json

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the label file {p}: {exc}") from None
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"the label file {p} is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            try:
                return tuple(str(data[str(i)]) for i in range(len(data)))
            except KeyError:
                raise UsageError(
                    f'the label file {p} must map "0".."{len(data) - 1}" to names'
                ) from None
        return tuple(str(x) for x in data)
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise UsageError(f"the label file {p} has no labels; write one class name per line")
    return labels


def parse_image_spec(spec: str, output: str = "") -> ImagePreprocess:
    """``size=8x8,grayscale,scale=1/255,mean=0.5,std=0.5,layout=nchw,resample=bilinear,crop=HxW``
    or the path of a Hugging Face ``preprocessor_config.json``."""
    p = Path(spec)
    if spec.endswith(".json") or p.is_file():
        import json

        from .image import from_hf_image_processor

        try:
            cfg = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read the image processor config {p}: {exc}") from None
        return from_hf_image_processor(cfg, output)
    fields: dict = {"output": output}
    for part in (x.strip() for x in spec.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        try:
            if key in ("grayscale", "gray", "l") and not eq:
                fields["mode"] = "L"
            elif key == "rgb" and not eq:
                fields["mode"] = "RGB"
            elif key in ("size", "crop"):
                h, _, w = value.lower().partition("x")
                fields[key] = (int(h), int(w or h))
            elif key == "scale":
                num, _, den = value.partition("/")
                fields["scale"] = float(num) / float(den) if den else float(num)
            elif key in ("mean", "std"):
                fields[key] = tuple(float(v) for v in value.split(":"))
            elif key == "layout":
                fields["layout"] = value.upper()
            elif key == "resample":
                fields["resample"] = value.lower()
            elif key == "mode":
                fields["mode"] = value.upper()
            else:
                raise UsageError(f"unknown item '{part}'")
        except (ValueError, ZeroDivisionError):
            raise UsageError(
                f"--image-preprocess '{spec}': cannot read '{part}' (e.g. size=8x8, scale=1/255, "
                "mean=0.485:0.456:0.406)"
            ) from None
        except UsageError as exc:
            raise UsageError(
                f"--image-preprocess '{spec}': {exc.message}; items: size=HxW, grayscale|rgb, "
                "scale=F, mean=A:B:C, std=A:B:C, layout=nchw|nhwc, resample=NAME, crop=HxW, or "
                "give a preprocessor_config.json"
            ) from None
    if "size" not in fields:
        raise UsageError(f"--image-preprocess '{spec}': give size=HxW (e.g. size=224x224)")
    return ImagePreprocess(**fields)
