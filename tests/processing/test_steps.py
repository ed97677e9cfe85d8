"""Processing steps as data, and the numpy/tokenizers/Pillow code that runs them."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from modelport.errors import InputError, PackageError, UsageError
from modelport.processing import STEPS, ImagePreprocess, Processing, Tokenize, TopK
from modelport.processing.config import parse_image_spec, read_label_file
from modelport.processing.image import ImageDecoder, encode_png, from_hf_image_processor
from modelport.processing.post import POST
from modelport.processing.steps import MeanPool, step_from_dict, step_to_dict
from modelport.processing.text import TextTokenizer, as_texts


def test_registry_is_a_plain_dict_and_steps_round_trip():
    assert STEPS["tokenize"] is Tokenize and STEPS["top_k"] is TopK
    steps = (
        Tokenize(file="processing/tokenizer.json", max_length=128),
        ImagePreprocess(size=(8, 8), output="x", mode="L", mean=(0.5,), std=(0.25,)),
    )
    p = Processing(pre=steps, post=(MeanPool(), TopK("processing/labels.txt", "embedding", k=2)))
    again = Processing.from_dict(p.to_dict())
    assert again == p
    assert again.files == ["processing/tokenizer.json", "processing/labels.txt"]


def test_bad_steps_are_refused_with_what_to_do():
    with pytest.raises(PackageError, match="unknown processing step kind 'resize'"):
        step_from_dict({"kind": "resize"})
    with pytest.raises(PackageError, match=r"unknown fields \['colour'\]"):
        step_from_dict({**step_to_dict(MeanPool()), "colour": "red"})
    with pytest.raises(UsageError, match="give 1 or 3"):
        ImagePreprocess(size=(8, 8), output="x", mean=(0.1, 0.2), std=(1, 1))
    with pytest.raises(UsageError, match="pre-processing step"):
        Processing(post=(Tokenize(file="t.json", max_length=8),))


def test_parse_image_spec_and_label_files(tmp_path):
    s = parse_image_spec("size=8x8,grayscale,scale=1/255,layout=nhwc", "x")
    assert (s.size, s.mode, s.layout, s.output) == ((8, 8), "L", "NHWC", "x")
    assert s.scale == pytest.approx(1 / 255)
    s = parse_image_spec("size=224x224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225")
    assert s.mean == (0.485, 0.456, 0.406) and s.mode == "RGB"
    with pytest.raises(UsageError, match="give size=HxW"):
        parse_image_spec("grayscale")
    with pytest.raises(UsageError, match="cannot read 'scale=a/b'"):
        parse_image_spec("size=8x8,scale=a/b")
    with pytest.raises(UsageError, match="unknown item 'sharpen'"):
        parse_image_spec("size=8x8,sharpen")
    (tmp_path / "l.txt").write_text("cat\ndog\n\n")
    assert read_label_file(tmp_path / "l.txt") == ("cat", "dog")
    (tmp_path / "l.json").write_text('{"0": "cat", "1": "dog"}')
    assert read_label_file(tmp_path / "l.json") == ("cat", "dog")


def test_tokenizer_pads_a_merged_batch_only_to_its_longest_row(tmp_path, minilm_dir):
    from transformers import AutoTokenizer

    (tmp_path / "processing").mkdir()
    shutil.copy(minilm_dir / "tokenizer.json", tmp_path / "processing" / "tokenizer.json")
    step = Tokenize(file="processing/tokenizer.json", max_length=12)
    tok = TextTokenizer(step, tmp_path)
    texts = ["Hi.", "The quick brown fox jumps over the lazy dog again and again and again."]
    a, b = tok.encode(texts[:1]), tok.encode(texts[1:])
    merged = {k: np.concatenate([a[k], b[k]]) for k in a}
    feed = tok.collate(merged)
    hf = AutoTokenizer.from_pretrained(str(minilm_dir))
    ref = hf(texts, padding=True, truncation=True, max_length=12, return_tensors="np")
    assert feed["input_ids"].shape == (2, 12)  # the long row was truncated to max_length
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(feed[k], ref[k])
    short = tok.collate(a)  # alone, the short text is not padded at all
    assert short["input_ids"].shape == (1, len(hf("Hi.")["input_ids"]))


def test_texts_must_be_text():
    assert as_texts("text", np.array([b"caf\xc3\xa9"], dtype=object)) == ["café"]
    with pytest.raises(InputError, match="not UTF-8"):
        as_texts("text", np.array([b"\xff"], dtype=object))
    with pytest.raises(InputError, match="1-D batch"):
        as_texts("text", np.array([["a", "b"]], dtype=object))


def test_post_steps_match_the_formulas():
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    env = {"last_hidden_state": tokens, "attention_mask": mask}
    pooled = POST["mean_pool"](MeanPool(), env, None)["embedding"]
    np.testing.assert_allclose(pooled[0], tokens[0, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(pooled[1], tokens[1].mean(0), rtol=1e-6)
    normed = POST["l2_normalize"](STEPS["l2_normalize"](), {"embedding": pooled}, None)
    np.testing.assert_allclose(np.linalg.norm(normed["embedding"], axis=1), 1.0, rtol=1e-6)
    probs = POST["softmax"](STEPS["softmax"](), {"logits": np.array([[0.0, 1.0, 2.0]])}, None)
    np.testing.assert_allclose(probs["probabilities"].sum(), 1.0, rtol=1e-6)
    top = POST["top_k"](TopK("l.txt", k=2), probs, ["a", "b", "c"])
    assert top["label"].tolist() == [[b"c", b"b"]]
    np.testing.assert_allclose(top["score"][0], np.sort(probs["probabilities"][0])[::-1][:2])
    top1 = POST["top_k"](TopK("l.txt"), probs, ["a", "b", "c"])
    assert top1["label"].tolist() == [b"c"] and top1["score"].shape == (1,)


def test_image_decoding_grayscale_nchw_and_resize():
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    step = ImagePreprocess(size=(8, 8), output="x", mode="L", scale=1 / 255)
    x = ImageDecoder(step).decode([encode_png(pixels)])
    assert x.shape == (1, 1, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], pixels / 255, rtol=1e-6)
    rgb = np.stack([pixels, pixels, pixels], axis=-1)
    big = ImagePreprocess(size=(4, 4), output="x", layout="NHWC", mean=(0.5,), std=(0.5,))
    y = ImageDecoder(big).decode([encode_png(rgb)])
    assert y.shape == (1, 4, 4, 3) and y.min() >= -1.0 and y.max() <= 1.0


def test_image_errors_say_what_to_send():
    dec = ImageDecoder(ImagePreprocess(size=(8, 8), output="x", max_pixels=100))
    with pytest.raises(InputError, match="row 0 is not a readable image"):
        dec.decode([b"not an image"])
    with pytest.raises(InputError, match="over the limit of 100"):
        dec.decode([encode_png(np.zeros((20, 20), np.uint8))])
    with pytest.raises(InputError, match="send the encoded image file"):
        dec.decode(["a string"])


def test_hf_image_processor_config_matches_transformers():
    from PIL import Image
    from transformers import ViTImageProcessor

    proc = ViTImageProcessor(
        size={"height": 16, "width": 16},
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.25, 0.3],
    )
    step = from_hf_image_processor(proc.to_dict(), "pixel_values")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    ours = ImageDecoder(step).decode([buf.getvalue()])
    ref = proc(Image.fromarray(img), return_tensors="np")["pixel_values"]
    assert ours.shape == ref.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
