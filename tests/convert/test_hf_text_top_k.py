"""``convert --hf`` text classifiers answer the k best classes (``--top-k``, labels from the
model's ``id2label``), verified text-in -> top-k labels/scores against transformers + softmax;
``--top-k`` where there are no labels at all is refused (exit 2, saying why)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.cli import main

LABELS = ["sports", "politics", "science", "music"]
TEXTS = [
    "The match went to extra time before the home side scored.",
    "Parliament passed the budget after a long night of debate.",
    "Researchers measured the decay of the isotope with a new detector.",
    "hi",
    "The orchestra played the symphony twice because the audience would not stop clapping, "
    "and the conductor, visibly moved, thanked every musician by name.",
    "A quiet evening.",
]
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory, minilm_dir) -> Path:
    """A random-weight DistilBERT sequence classifier (4 named classes) built from a config, with
    the packaged MiniLM's (BERT uncased) tokenizer beside it: nothing downloaded."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(2)  # classes well apart on TEXTS (top-3 gaps >= 1e-4), not all one class
    cfg = DistilBertConfig(
        vocab_size=30522,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=512,
        initializer_range=0.5,  # large weights: the text, not the [CLS] token, decides the class
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    model = DistilBertForSequenceClassification(cfg).eval()
    d = tmp_path_factory.mktemp("hf") / "tiny-distilbert"
    model.save_pretrained(d)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, d / name)
    return d


def _transformers_top_k(d: Path, texts: list[str], k: int) -> tuple[list[list[str]], np.ndarray]:
    """The source: transformers' tokenizer + model, softmax, the k best (labels, scores)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(d), local_files_only=True)
    labels, scores = [], []
    with torch.no_grad():
        for text in texts:  # one by one: no padding in the reference at all
            enc = tok(text, truncation=True, max_length=512, return_tensors="pt")
            probs = torch.softmax(model.eval()(**enc).logits[0].double(), dim=-1).numpy()
            best = np.argsort(-probs)[:k]
            labels.append([model.config.id2label[int(i)] for i in best])
            scores.append(probs[best])
    return labels, np.asarray(scores)


def test_cli_top_k_answers_the_k_best_classes_of_id2label(tiny_classifier, tmp_path, capsys):
    out = tmp_path / "tiny-top3"
    argv = ["convert", "--hf", str(tiny_classifier), "-o", str(out), "--top-k", "3"]
    assert main(argv) == 0, capsys.readouterr().err
    manifest = json.loads((out / "modelport.json").read_text())
    proc = manifest["processing"]
    assert [s["kind"] for s in proc["post"]] == ["softmax", "top_k"]
    assert proc["post"][-1]["k"] == 3
    assert proc["verification"]["passed"] and proc["verification"]["max_abs_score_diff"] < 1e-4
    assert proc["outputs"] == ["label", "score"]

    got = modelport.load(out)(TEXTS)
    assert got["label"].shape == (len(TEXTS), 3) and got["score"].shape == (len(TEXTS), 3)
    want_labels, want_scores = _transformers_top_k(tiny_classifier, TEXTS, 3)
    have = [[x.decode() if isinstance(x, bytes) else str(x) for x in row] for row in got["label"]]
    assert have == want_labels
    np.testing.assert_allclose(got["score"], want_scores, atol=1e-5)
    assert len({row[0] for row in have}) > 1  # the texts do not all land in one class


def test_default_answers_the_best_class_only(tiny_classifier, tmp_path):
    from modelport.convert import Source, convert

    pkg = convert(Source.hf(str(tiny_classifier)), tmp_path / "tiny").package
    got = modelport.load(pkg)(TEXTS[:3])
    assert got["label"].shape == (3,) and got["score"].shape == (3,)
    want_labels, want_scores = _transformers_top_k(tiny_classifier, TEXTS[:3], 1)
    assert [x.decode() if isinstance(x, bytes) else str(x) for x in got["label"]] == [
        row[0] for row in want_labels
    ]
    np.testing.assert_allclose(got["score"], want_scores[:, 0], atol=1e-5)


def test_top_k_beyond_the_classes_is_refused_before_exporting(tiny_classifier, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["convert", "--hf", str(tiny_classifier), "-o", str(out), "--top-k", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--top-k 5 is more than the model's 4 classes" in err and "Traceback" not in err
    assert not out.exists()


def test_top_k_without_any_labels_is_refused(minilm_dir, tmp_path, capsys):
    """An embedding model has no classes; a model from another source has none without
    --label-file; --no-softmax alone means nothing. Exit 2, nothing written, saying why."""
    out = tmp_path / "out"
    assert main(["convert", "--hf", str(minilm_dir), "-o", str(out), "--top-k", "2"]) == 2
    err = capsys.readouterr().err
    assert "--top-k 2 needs class labels" in err and "task feature-extraction" in err
    assert "--label-file" in err and "Traceback" not in err
    argv = ["convert", "--torch", "tests.convert.torch_models:build_mlp"]
    argv += ["--input", "x:batch,4:float32", "-o", str(out), "--top-k", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--top-k 2 needs class labels and this model has none: give --label-file" in err
    argv[-2:] = ["--no-softmax"]
    assert main(argv) == 2
    assert "--no-softmax goes with --label-file" in capsys.readouterr().err
    assert not out.exists()
