"""The packaged all-MiniLM-L6-v2 from its Hugging Face directory, and HF error cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.convert import Source, convert
from modelport.errors import ConversionError, UsageError
from modelport.runtime import make_session, run_session


def test_minilm_package_signature_and_provenance(minilm_package):
    sig = minilm_package.signature
    assert sig.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    for spec in sig.inputs:
        assert spec.shape == ("batch", "sequence") and spec.dtype == "int64"
    assert sig.outputs[0].name == "last_hidden_state"
    assert sig.outputs[0].shape == ("batch", "sequence", 384)
    prov = minilm_package.manifest["provenance"]
    assert prov["source_kind"] == "hf" and prov["task"] == "feature-extraction"
    assert prov["architecture"] == "BertModel" and prov["vocab_size"] == 30522


def test_minilm_verified_at_batch_1_and_4_sequence_16_and_128(minilm_package):
    v = minilm_package.manifest["verification"]
    assert v["passed"] is True
    shapes = {tuple(c["input_shapes"]["input_ids"]) for c in v["cases"]}
    assert {(1, 16), (4, 16), (4, 128)} <= shapes
    for case in v["cases"]:
        for out in case["outputs"]:
            assert out["max_abs_diff"] < 1e-4, case["label"]


def test_minilm_embeddings_match_sentence_transformers(minilm_package, minilm_dir):
    """The ONNX graph + mean pooling reproduces the sentence-transformers embedding."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from modelport.metrics import mean_pool

    sentences = ["ONNX makes models portable.", "A cat sat on the mat while it rained outside."]
    tok = AutoTokenizer.from_pretrained(str(minilm_dir), local_files_only=True)
    enc = tok(sentences, padding=True, return_tensors="np")
    feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    hidden = run_session(make_session(minilm_package.model_path), feed)["last_hidden_state"]
    ours = mean_pool(hidden, feed["attention_mask"])
    st = SentenceTransformer(str(minilm_dir), device="cpu").encode(
        sentences, normalize_embeddings=True
    )
    assert np.allclose(ours, st, atol=1e-4)


def test_text_classification_task(tmp_path, minilm_dir):
    """A sequence-classification head on a tiny BERT config built locally (no download)."""
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
        num_labels=3,
    )
    model = BertForSequenceClassification(cfg).eval()
    d = tmp_path / "tinybert"
    model.save_pretrained(d)
    res = convert(Source.hf(str(d)), tmp_path / "pkg")
    sig = res.package.signature
    assert sig.output_names == ["logits"] and sig.outputs[0].shape == ("batch", 3)
    assert res.package.manifest["provenance"]["task"] == "text-classification"
    # random ids stayed in the vocabulary: every case ran and passed
    assert all(c.passed for c in res.report.cases)
    assert {c.input_shapes["input_ids"][1] for c in res.report.cases} >= {16, 128}
    # the directory has no tokenizer files: transformers 5 builds an empty one from config.json
    # (5 special tokens, every word [UNK]); it must not ship as the package's text processing
    assert res.package.manifest.get("processing") is None
    assert not (res.package.path / "processing").exists()
    assert any("no tokenizer files" in n for n in res.notes)


def test_hf_dir_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no config.json"):
        convert(Source.hf(str(tmp_path / "empty")), tmp_path / "out")


def test_hf_unknown_task(tmp_path, minilm_dir):
    with pytest.raises(UsageError, match="not supported"):
        convert(Source.hf(str(minilm_dir), task="translation"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_minilm_manifest_is_json_and_lists_history(minilm_package):
    manifest = json.loads((minilm_package.path / "modelport.json").read_text())
    assert manifest["history"][0]["step"] == "convert"
    assert manifest["history"][0]["exporter"] in ("dynamo", "torchscript")


def _tiny_t5_config():
    from transformers import T5Config

    return T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)


def test_t5_encoder_directory_converts_as_its_own_class(tmp_path):
    """A saved T5EncoderModel used to load through AutoModel as the whole T5Model (decoder weights
    randomly initialized) and fail with "You must specify exactly one of input_ids or
    inputs_embeds"; it loads as T5EncoderModel and matches it."""
    import torch
    from transformers import T5EncoderModel

    torch.manual_seed(0)
    model = T5EncoderModel(_tiny_t5_config()).eval()
    model.save_pretrained(tmp_path / "t5enc")
    res = convert(Source.hf(str(tmp_path / "t5enc")), tmp_path / "pkg")
    assert res.report.passed
    assert res.package.signature.output_names == ["last_hidden_state"]
    ids = np.array([[5, 9, 2, 1, 0, 0], [3, 3, 7, 8, 9, 1]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1] * 6], dtype=np.int64)
    got = run_session(
        make_session(res.package.model_path), {"input_ids": ids, "attention_mask": mask}
    )["last_hidden_state"]
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    np.testing.assert_allclose(got, want.last_hidden_state.numpy(), atol=1e-4)


def test_encoder_decoder_directory_is_refused_clearly(tmp_path):
    import torch
    from transformers import T5Model

    torch.manual_seed(0)
    T5Model(_tiny_t5_config()).save_pretrained(tmp_path / "t5")
    with pytest.raises(ConversionError, match=r"encoder-decoder model \(T5Model\).*T5EncoderModel"):
        convert(Source.hf(str(tmp_path / "t5")), tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_image_classifier_without_processor_config_says_what_to_do(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    ViTForImageClassification(cfg).save_pretrained(tmp_path / "vit")
    with pytest.raises(ConversionError, match="no preprocessor_config.json") as err:
        convert(Source.hf(str(tmp_path / "vit")), tmp_path / "pkg")
    assert "save_pretrained(DIR)" in str(err.value) and "--torch" in str(err.value)
    assert not (tmp_path / "pkg").exists()
