"""``convert --hf`` with an image classifier (a ViT directory with preprocessor_config.json and
id2label): the package takes an image file and answers label/score, checked here image-in ->
label-out against transformers. The model is a tiny random-weight ViT built and saved in the
test (nothing downloads)."""

from __future__ import annotations

import io

import numpy as np
import pytest

import modelport
from modelport.errors import ConversionError, VerificationError

LABELS = ["cat", "dog", "bird", "fish", "frog"]


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    d = tmp_path_factory.mktemp("vit") / "tiny-vit"
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    ViTForImageClassification(config).eval().save_pretrained(d)
    # resize to 40x40, center-crop to 32x32, ImageNet normalization
    ViTImageProcessor(
        size={"height": 40, "width": 40},
        do_center_crop=True,
        crop_size={"height": 32, "width": 32},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def vit_package(tmp_path_factory, vit_dir):
    from modelport.convert import Source, convert

    return convert(Source.hf(str(vit_dir)), tmp_path_factory.mktemp("pkg") / "vit").package


def _images(n, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = (50 + 7 * i, 90 - 5 * i)
        coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        out.append(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))
    return out


def _encoded(images, fmt):
    files = []
    for img in images:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        files.append(buf.getvalue())
    return files


def _transformers(vit_dir, images):
    """Labels and scores from the transformers image processor (PIL) and the source model."""
    import torch
    import transformers

    processor = transformers.AutoImageProcessor.from_pretrained(
        str(vit_dir), local_files_only=True, backend="pil"
    )
    model = transformers.ViTForImageClassification.from_pretrained(str(vit_dir)).eval()
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = torch.softmax(model(pixel_values=pixels).logits, dim=-1).numpy()
    return [LABELS[i] for i in probs.argmax(axis=1)], probs.max(axis=1)


def test_convert_writes_image_steps_and_labels(vit_package):
    m = vit_package.manifest
    assert m["provenance"]["task"] == "image-classification"
    assert [i["name"] for i in m["signature"]["inputs"]] == ["pixel_values"]
    proc = m["processing"]
    (pre,) = proc["pre"]
    assert pre["kind"] == "image" and pre["input"] == "image" and pre["output"] == "pixel_values"
    assert pre["size"] == [40, 40] and pre["crop"] == [32, 32]
    assert pre["mean"] == [0.485, 0.456, 0.406]
    assert [s["kind"] for s in proc["post"]] == ["softmax", "top_k"]
    assert proc["outputs"] == ["label", "score"]
    assert proc["verification"]["passed"] and proc["verification"]["images"] >= 12
    assert proc["verification"]["max_abs_score_diff"] <= 1e-4
    labels = (vit_package.path / "processing" / "labels.txt").read_text().splitlines()
    assert labels == LABELS
    assert m["files"]["processing/labels.txt"]["sha256"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_in_label_out_equals_transformers(vit_package, vit_dir, fmt):
    images = _images(8, seed=7)
    files = _encoded(images, fmt)
    from PIL import Image

    decoded = [Image.open(io.BytesIO(f)).convert("RGB") for f in files]
    want_labels, want_scores = _transformers(vit_dir, decoded)
    got = modelport.load(vit_package)({"image": files})
    assert [x.decode() for x in got["label"]] == want_labels
    np.testing.assert_allclose(got["score"], want_scores, atol=1e-4)


def test_served_signature_is_image_in_label_out(vit_package):
    pipe = modelport.load(vit_package)
    assert [(t.name, t.dtype) for t in pipe.signature.inputs] == [("image", "str")]
    assert pipe.output_names == ["label", "score"]


def test_a_wrong_image_mapping_fails_the_conversion(tmp_path, vit_dir, monkeypatch):
    import dataclasses

    from modelport.convert import Source, convert
    from modelport.processing import image

    real = image.from_hf_image_processor

    def wrong(config, output):  # what a mistaken reading of the processor config would give
        return dataclasses.replace(real(config, output), mean=(0.5, 0.5, 0.5))

    monkeypatch.setattr(image, "from_hf_image_processor", wrong)
    with pytest.raises(VerificationError, match="image processing does not match"):
        convert(Source.hf(str(vit_dir)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_without_a_preprocessor_config_it_says_what_is_missing(tmp_path, vit_dir):
    import shutil

    from modelport.convert import Source, convert

    d = tmp_path / "vit"
    shutil.copytree(vit_dir, d)
    (d / "preprocessor_config.json").unlink()
    with pytest.raises(ConversionError, match="no preprocessor_config.json"):
        convert(Source.hf(str(d)), tmp_path / "out")


def test_top_k_answers_the_best_classes_and_keeps_the_check(tmp_path, vit_dir):
    from modelport.convert import ConvertConfig, Source, convert
    from modelport.processing.config import ProcessingConfig

    cfg = ConvertConfig(processing=ProcessingConfig(top_k=3))
    pkg = convert(Source.hf(str(vit_dir)), tmp_path / "top3", cfg).package
    proc = pkg.manifest["processing"]
    assert proc["post"][-1]["k"] == 3
    assert proc["verification"]["passed"]  # the converter's image-in -> label-out check
    images = _images(4, seed=3)
    got = modelport.load(pkg)({"image": _encoded(images, "PNG")})
    assert got["label"].shape == (4, 3) and got["score"].shape == (4, 3)
    want_labels, want_scores = _transformers(vit_dir, images)
    assert [row[0].decode() for row in got["label"]] == want_labels
    np.testing.assert_allclose(got["score"][:, 0], want_scores, atol=1e-4)
    assert (np.diff(got["score"], axis=1) <= 0).all()  # best first


def test_cli_top_k_takes_the_labels_from_id2label(tmp_path, vit_dir, capsys):
    """``convert --hf VIT --top-k 3`` needs no --label-file (the labels are the model's
    id2label); more than its classes is refused before exporting (exit 2, nothing written)."""
    from modelport.cli import main

    over = tmp_path / "over"
    too_many = str(len(LABELS) + 1)
    assert main(["convert", "--hf", str(vit_dir), "-o", str(over), "--top-k", too_many]) == 2
    err = capsys.readouterr().err
    assert f"--top-k {too_many} is more than the model's {len(LABELS)} classes" in err
    assert not over.exists()
    out = tmp_path / "top3"
    assert main(["convert", "--hf", str(vit_dir), "-o", str(out), "--top-k", "3"]) == 0
    capsys.readouterr()
    images = _images(3, seed=5)
    got = modelport.load(out)({"image": _encoded(images, "PNG")})
    assert got["label"].shape == (3, 3)
    want_labels, want_scores = _transformers(vit_dir, images)
    assert [row[0].decode() for row in got["label"]] == want_labels
    np.testing.assert_allclose(got["score"][:, 0], want_scores, atol=1e-4)
