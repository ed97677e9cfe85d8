"""End-to-end checks of a package's processing at convert time: text in -> embedding/label out, or
image in -> label out, against the source framework. A failed check fails the conversion."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..signature import Signature
from .pipeline import Pipeline, Processing

__all__ = [
    "MIN_COSINE",
    "VERIFY_SENTENCES",
    "compare_embeddings",
    "compare_labels",
    "staged_pipeline",
]

# The issue's bar: text-in -> embedding-out matches sentence-transformers' encode this closely.
MIN_COSINE = 0.9999

# Real sentences of different lengths and kinds (the last one is longer than 256 tokens, so that
# truncation is checked too). benchmarks/data/sentences.txt has 256 more for the benchmarks.
VERIFY_SENTENCES: tuple[str, ...] = (
    "The train to Edinburgh was delayed by forty minutes because of a signal failure near York.",
    "She planted tomatoes, basil and a row of marigolds along the south fence.",
    "Interest rates rose again this quarter, and mortgage applications fell sharply.",
    "Hello!",
    "Is this the right way to the museum?",
    "The committee will publish its findings on Thursday, after a two-year inquiry.",
    "Add two cups of flour, a pinch of salt and stir until the dough comes together.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "Prices start at $19.99 (tax not included) — see www.example.com for details.",
    "GPU memory ran out at batch size 64, so we fell back to 32 with gradient accumulation.",
    "The patient reported mild headaches and was advised to drink more water.",
    "I can't believe it's already December; where did the year go?",
    "Quantum computers exploit superposition and entanglement to solve certain problems faster.",
    "The library closes at 8 pm on weekdays and at noon on Saturdays.",
    "ok",
    "A model package carries its graph, its signature, its tokenizer and where it came from. " * 20,
)


@contextlib.contextmanager
def staged_pipeline(
    processing: Processing,
    files: Mapping[str, bytes | Any],
    model: Any,
    graph: Signature,
    *,
    trust: bool = False,
) -> Iterator[Pipeline]:
    """A pipeline over ``model`` (a ModelProto) with ``files`` written to a temporary directory."""
    import shutil

    from ..runtime import make_session, run_session

    with tempfile.TemporaryDirectory(prefix="modelport-processing-") as tmp:
        base = Path(tmp)
        for rel, content in files.items():
            dest = base / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                dest.write_bytes(content)
            else:
                shutil.copyfile(content, dest)
        session = make_session(model)
        names = [o.name for o in session.get_outputs()]
        yield Pipeline(
            processing, base, graph, lambda f: run_session(session, f, names), trust=trust
        )


def compare_embeddings(
    ours: np.ndarray, reference: np.ndarray, min_cosine: float = MIN_COSINE
) -> dict[str, Any]:
    """Row-wise cosine similarity and max abs difference; ``passed`` when every row reaches
    ``min_cosine``."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(reference, np.float64)
    if ours.shape != ref.shape:
        return {
            "passed": False,
            "note": f"shape {list(ours.shape)} differs from the source's {list(ref.shape)}",
        }
    num = (ours * ref).sum(axis=1)
    den = np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1)
    cos = num / np.maximum(den, 1e-12)
    worst = int(np.argmin(cos))
    return {
        "passed": bool(cos.min() >= min_cosine),
        "rows": int(len(cos)),
        "min_cosine": float(cos.min()),
        "worst_row": worst,
        "max_abs_diff": float(np.abs(ours - ref).max()),
        "threshold_cosine": min_cosine,
    }


def compare_labels(
    ours: Sequence[Any], reference: Sequence[Any], scores: Any = None, ref_scores: Any = None
) -> dict[str, Any]:
    """Labels equal row by row (and the scores' max abs difference, when given)."""
    ours = [x.decode() if isinstance(x, bytes) else str(x) for x in ours]
    reference = [x.decode() if isinstance(x, bytes) else str(x) for x in reference]
    wrong = [i for i, (a, b) in enumerate(zip(ours, reference, strict=True)) if a != b]
    out: dict[str, Any] = {
        "passed": not wrong,
        "rows": len(ours),
        "mismatched_rows": wrong[:10],
    }
    if scores is not None and ref_scores is not None:
        out["max_abs_score_diff"] = float(
            np.abs(np.asarray(scores, np.float64) - np.asarray(ref_scores, np.float64)).max()
        )
    return out


def failure_message(what: str, report: Mapping[str, Any], hint: str) -> str:
    details = ", ".join(f"{k}={v}" for k, v in report.items() if k != "passed")
    return f"the packaged {what} does not match the source ({details}). {hint}"


Check = Callable[[Pipeline], dict[str, Any]]
