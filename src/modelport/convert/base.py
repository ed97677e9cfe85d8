"""Types shared by the converters: what a source is, how to convert it, what a converter returns,
and the ``Converter`` interface every entry of ``convert.CONVERTERS`` has."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..data import Feed
from ..errors import UsageError
from ..package import ModelPackage
from ..signature import TensorSpec
from ..verify import VerifyConfig, VerifyReport

__all__ = ["ConvertConfig", "ConvertResult", "Converter", "Exported", "Source", "DynamicAxes"]

# input (or output) name -> axis -> symbolic dim name
DynamicAxes = Mapping[str, Mapping[int, str]]

EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclass(frozen=True)
class Source:
    """A model to convert. Build it with one of the constructors, e.g. ``Source.torch_factory``.

    kind: key into ``modelport.convert.CONVERTERS``.
    path: file or directory of the source model, when it lives on disk.
    target: "module:attribute" of a factory function or class.
    obj: an in-memory model object (nn.Module, keras.Model, sklearn estimator).
    weights: state_dict file for ``torch_class``.
    init_args: keyword arguments for the class constructor.
    task: Hugging Face task ("feature-extraction", "text-classification") or None to infer.
    signature_name, tag: SavedModel signature and tag set.
    trust: allow unpickling (scikit-learn pickles, full torch checkpoints): runs code from the file.
    """

    kind: str
    path: str | None = None
    target: str | None = None
    obj: Any = None
    weights: str | None = None
    init_args: Mapping[str, Any] = field(default_factory=dict)
    task: str | None = None
    signature_name: str = "serving_default"
    tag: str = "serve"
    trust: bool = False

    @classmethod
    def torch_module(cls, module: Any) -> Source:
        return cls("torch", obj=module)

    @classmethod
    def torch_factory(cls, target: str) -> Source:
        return cls("torch", target=target)

    @classmethod
    def torch_class(
        cls, target: str, weights: str, init_args: Mapping[str, Any] | None = None
    ) -> Source:
        return cls("torch", target=target, weights=weights, init_args=dict(init_args or {}))

    @classmethod
    def torchscript(cls, path: str) -> Source:
        return cls("torchscript", path=str(path))

    @classmethod
    def exported_program(cls, path: str) -> Source:
        return cls("exported_program", path=str(path))

    @classmethod
    def hf(cls, path: str, task: str | None = None) -> Source:
        return cls("hf", path=str(path), task=task)

    @classmethod
    def onnx(cls, path: str) -> Source:
        return cls("onnx", path=str(path))

    @classmethod
    def savedmodel(
        cls, path: str, signature_name: str = "serving_default", tag: str = "serve"
    ) -> Source:
        return cls("savedmodel", path=str(path), signature_name=signature_name, tag=tag)

    @classmethod
    def keras(cls, path_or_model: Any, trust: bool = False) -> Source:
        """A Keras file (.keras/.h5) or model object; ``trust`` allows files whose Lambda layers
        carry Python code (deserializing them runs that code)."""
        if isinstance(path_or_model, str):
            return cls("keras", path=path_or_model, trust=trust)
        return cls("keras", obj=path_or_model)

    @classmethod
    def sklearn(cls, path_or_model: Any, trust: bool = False) -> Source:
        if isinstance(path_or_model, str):
            return cls("sklearn", path=path_or_model, trust=trust)
        return cls("sklearn", obj=path_or_model, trust=True)

    def describe(self) -> str:
        what = self.path or self.target or type(self.obj).__name__
        return f"{self.kind}:{what}"


@dataclass(frozen=True)
class ConvertConfig:
    """How to convert.

    inputs: input specs (name, dtype, shape with symbolic dims) used to generate example inputs
        when ``example`` is not given; symbolic dims become dynamic axes.
    example: example inputs by name (leading batch axis); matched to the model's parameters
        (PyTorch forward()) by name.
    input_ranges: value range [low, high) of generated inputs by name (``--input
        ids:batch,6:int64:0..50``); other integer ranges come from the model where it tells.
    dynamic: extra dynamic axes by input name (``{"input_ids": {1: "sequence"}}``).
    dynamic_batch: make axis 0 of every input and output dynamic ("batch").
    input_names / output_names: names to give the graph's inputs and outputs.
    opset: target opset (None: the exporter's default).
    exporter: torch exporter: "auto" (dynamo, then TorchScript if it fails or breaks parity),
        "dynamo" or "torchscript".
    verify: parity settings.
    allow_mismatch: write the package even when parity fails (the manifest records the failure).
    external_data: store weights in model.onnx.data (None: only when over 2 GB).
    name: package name (default: the output directory's name).
    processing: pre/post-processing to ship in the package (image decoding, labels, a custom
        handler); ``--hf`` text models get theirs without it.
    """

    inputs: tuple[TensorSpec, ...] = ()
    example: Feed | None = None
    input_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    dynamic: DynamicAxes = field(default_factory=dict)
    dynamic_batch: bool = True
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    opset: int | None = None
    exporter: str = "auto"
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    allow_mismatch: bool = False
    external_data: bool | None = None
    name: str | None = None
    processing: Any = None  # modelport.processing.config.ProcessingConfig

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise UsageError(f"exporter={self.exporter!r}: choose one of {list(EXPORTERS)}")
        if self.opset is not None and not 7 <= self.opset <= 25:
            raise UsageError(f"opset={self.opset} is outside the supported range 7..25")


@dataclass
class Exported:
    """What a converter hands back: the ONNX model plus what verification needs."""

    model: Any  # onnx.ModelProto
    reference: Callable[[Feed], Any]
    example: Feed
    declared_dynamic: DynamicAxes
    provenance: dict[str, Any]
    exporter: str
    notes: list[str] = field(default_factory=list)
    verify_config: VerifyConfig | None = None
    report: VerifyReport | None = None  # set when the converter already verified
    processing: Any = None  # modelport.processing.Processing, when the converter found some
    processing_files: dict[str, Any] = field(default_factory=dict)  # package path -> bytes
    samples: bool = True  # store the example and the source's outputs on it as samples/


class Converter(Protocol):
    """Exports one kind of source to ONNX: ``CONVERTERS[source.kind](source, config)``.

    A converter imports its framework itself (``import modelport.convert`` stays light), leaves
    the source and ``config`` unchanged, never writes the package (``convert`` verifies the
    returned model and writes it atomically), and raises ``ConversionError``, ``InputError`` or
    ``UsageError`` with what to do for a source it cannot convert.
    """

    def __call__(self, source: Source, config: ConvertConfig, /) -> Exported: ...


@dataclass
class ConvertResult:
    package: ModelPackage
    report: VerifyReport
    exporter: str
    seconds: float
    notes: list[str] = field(default_factory=list)
