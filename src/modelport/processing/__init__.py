"""Processing that travels in the package: text/image in, embeddings/labels out.

    import modelport
    embed = modelport.load("minilm")             # the graph plus its tokenizer and pooling
    embed(["A sentence.", "Another one."])       # {"embedding": array [2, 384]}

Steps are declared in the manifest (``steps.py``), run by ``Pipeline`` here, by ``modelport serve``
(every protocol) and by ``modelport bench``. ``convert --hf`` writes them for text models;
``convert --image-preprocess ... --labels ...`` for image classifiers (see docs/processing.md).
"""

from __future__ import annotations

from .handler import HandlerRef
from .pipeline import Pipeline, Processing
from .steps import (
    STEPS,
    ClsPool,
    ImagePreprocess,
    L2Normalize,
    MaxPool,
    MeanPool,
    Softmax,
    Tokenize,
    TopK,
)

__all__ = [
    "ClsPool",
    "HandlerRef",
    "ImagePreprocess",
    "L2Normalize",
    "MaxPool",
    "MeanPool",
    "Pipeline",
    "Processing",
    "STEPS",
    "Softmax",
    "Tokenize",
    "TopK",
    "load",
]


def load(package, *, trust: bool = False) -> Pipeline:
    """The package as a callable: public inputs in (texts, images), processed outputs out.

    ``trust`` allows a custom handler shipped in the package to run (it is Python code)."""
    return Pipeline.load(package, trust=trust)
