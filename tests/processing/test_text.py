"""MiniLM end to end: convert --hf writes the tokenizer and pooling, checks them against
sentence-transformers, and the package answers text with embeddings (Python and every protocol)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

import modelport.processing as mp
from modelport.errors import VerificationError
from modelport.serve.http.app import HttpSettings, build_app

from ..serve.conftest import running

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = (ROOT / "benchmarks" / "data" / "sentences.txt").read_text().splitlines()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def st_model(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


def test_convert_writes_and_verifies_text_processing(minilm_package):
    proc = minilm_package.manifest["processing"]
    assert [s["kind"] for s in proc["pre"]] == ["tokenize"]
    assert proc["pre"][0]["max_length"] == 256  # sentence-transformers' max_seq_length
    assert [s["kind"] for s in proc["post"]] == ["mean_pool", "l2_normalize"]
    assert proc["outputs"] == ["embedding"]
    v = proc["verification"]
    assert v["passed"] and v["min_cosine"] >= 0.9999 and v["texts"] >= 16
    files = minilm_package.manifest["files"]
    assert files["processing/tokenizer.json"]["sha256"]
    tok = json.loads((minilm_package.path / "processing/tokenizer.json").read_text())
    assert tok["padding"] is None and tok["truncation"] is None  # rules live in the manifest


def test_python_call_equals_sentence_transformers(minilm_package, st_model):
    embed = mp.load(minilm_package.path)
    assert embed.signature.input_names == ["text"]
    texts = SENTENCES[:64]
    ours = embed(texts)["embedding"]
    ref = st_model.encode(texts, convert_to_numpy=True)
    assert ours.shape == (64, 384)
    assert np.abs(ours - ref).max() <= 1e-4
    one = embed("Just one sentence.")["embedding"]
    assert one.shape == (1, 384)


def test_a_mismatch_fails_the_conversion(tmp_path, minilm_dir, monkeypatch):
    from modelport.convert import Source, convert, hf

    real = hf.sentence_transformers_config

    def cls_pooling(path):
        return {**real(path), "pooling": "cls"}  # not what the model was trained with

    monkeypatch.setattr(hf, "sentence_transformers_config", cls_pooling)
    with pytest.raises(VerificationError, match="text processing does not match the source"):
        convert(Source.hf(str(minilm_dir)), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def _client(plane):
    app = build_app(plane, HttpSettings())
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _v2_text(texts):
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}


@pytest.mark.anyio
async def test_served_text_in_embedding_out_every_protocol(minilm_package, st_model):
    ref = st_model.encode(SENTENCES[:8], convert_to_numpy=True)
    async with running(minilm_package.path, max_queue_delay_ms=20) as plane, _client(plane) as c:
        name = minilm_package.path.name
        meta = (await c.get(f"/v2/models/{name}")).json()
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        assert meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
        # concurrent requests of different lengths: merged, padded to the longest, split back
        rs = await asyncio.gather(
            *[c.post(f"/v2/models/{name}/infer", json=_v2_text([s])) for s in SENTENCES[:8]]
        )
        got = np.array([r.json()["outputs"][0]["data"] for r in rs], dtype=np.float32)
        assert all(r.status_code == 200 for r in rs)
        assert np.abs(got - ref).max() <= 1e-4
        r = await c.post(f"/v1/models/{name}:predict", json={"instances": SENTENCES[:2]})
        assert np.abs(np.array(r.json()["predictions"]) - ref[:2]).max() <= 1e-4
        r = await c.post(f"/predictions/{name}", json=SENTENCES[0])
        assert np.abs(np.array(r.json()) - ref[0]).max() <= 1e-4
        # the bare graph is still there for clients that tokenize themselves
        raw = (await c.get(f"/v2/models/{name}_raw")).json()
        assert [i["name"] for i in raw["inputs"]][:2] == ["input_ids", "attention_mask"]
        ids = np.array([[101, 7592, 2088, 102]])
        feed = {
            "inputs": [
                {"name": n, "datatype": "INT64", "shape": [1, 4], "data": v.ravel().tolist()}
                for n, v in (
                    ("input_ids", ids),
                    ("attention_mask", np.ones_like(ids)),
                    ("token_type_ids", np.zeros_like(ids)),
                )
            ]
        }
        r = await c.post(f"/v2/models/{name}_raw/infer", json=feed)
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 4, 384]
        # token ids sent to the text model: a 400 that points at the raw model
        r = await c.post(f"/v2/models/{name}/infer", json=feed)
        assert r.status_code == 400 and f"'{name}_raw'" in r.json()["error"]
        bad = _v2_text(["x"])
        bad["inputs"][0]["datatype"] = "FP32"
        bad["inputs"][0]["data"] = [1.0]
        r = await c.post(f"/v2/models/{name}/infer", json=bad)
        assert r.status_code == 400 and "expects BYTES" in r.json()["error"]


@pytest.mark.anyio
async def test_long_requests_are_tokenized_off_the_event_loop(minilm_package, monkeypatch):
    import threading

    from modelport.processing.text import TextTokenizer

    threads = []
    real = TextTokenizer.encode

    def spy(self, texts):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(self, texts)

    monkeypatch.setattr(TextTokenizer, "encode", spy)
    async with running(minilm_package.path) as plane, _client(plane) as c:
        name = minilm_package.path.name
        threads.clear()
        assert (await c.post(f"/v2/models/{name}/infer", json=_v2_text(["short"]))).is_success
        assert (await c.post(f"/v2/models/{name}/infer", json=_v2_text(SENTENCES[:40]))).is_success
    assert threads == [True, False]  # small: on the loop; 40 sentences: in a worker thread


def test_derived_packages_keep_the_processing(tmp_path, minilm_package):
    from modelport.package import derive_package

    out = derive_package(
        minilm_package, minilm_package.load_onnx(), tmp_path / "copy", {"step": "test"}
    )
    assert (out.path / "processing" / "tokenizer.json").is_file()
    assert (
        out.manifest["files"]["processing/tokenizer.json"]
        == (minilm_package.manifest["files"]["processing/tokenizer.json"])
    )
    assert mp.load(out.path)(["a sentence"])["embedding"].shape == (1, 384)


def test_a_changed_tokenizer_is_refused(tmp_path, minilm_package):
    import shutil

    from modelport.errors import PackageError

    copy = tmp_path / "pkg"
    shutil.copytree(minilm_package.path, copy)
    with open(copy / "processing" / "tokenizer.json", "a") as f:
        f.write(" ")
    with pytest.raises(PackageError, match="changed since the package was written"):
        mp.load(copy)


@pytest.mark.anyio
async def test_served_text_over_grpc(minilm_package, st_model):
    import grpc

    from modelport.serve.grpc.generated import grpc_service_pb2 as pb
    from modelport.serve.grpc.generated import grpc_service_pb2_grpc as pb_grpc
    from modelport.serve.grpc.server import build_grpc_server

    ref = st_model.encode(SENTENCES[:2], convert_to_numpy=True)
    async with running(minilm_package.path) as plane:
        server, port = build_grpc_server(plane, "127.0.0.1", 0, 1 << 20)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                req = pb.ModelInferRequest(model_name=minilm_package.path.name)
                t = req.inputs.add(name="text", datatype="BYTES", shape=[2])
                t.contents.bytes_contents.extend([s.encode() for s in SENTENCES[:2]])
                resp = await stub.ModelInfer(req)
                assert resp.outputs[0].name == "embedding"
                assert list(resp.outputs[0].shape) == [2, 384]
                got = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 384)
                assert np.abs(got - ref).max() <= 1e-4
        finally:
            await server.stop(0)


def test_torchserve_target_carries_the_text_processing(tmp_path, minilm_package):
    import zipfile

    from modelport.deploy import package_for

    r = package_for(minilm_package, "torchserve", tmp_path / "store")
    with zipfile.ZipFile(r.path) as z:
        assert "processing/tokenizer.json" in set(z.namelist())
    assert any("handler ran on a sample text: outputs match" in c for c in r.checks)
