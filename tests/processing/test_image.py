"""The digits CNN end to end: convert --image-preprocess/--label-file writes image decoding and
labels, checks image-in -> label-out against the source, and serves a PNG in, the label out."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
import torch

import modelport
from modelport.cli import main
from modelport.errors import UsageError
from modelport.processing.image import encode_png
from modelport.serve.http.app import HttpSettings, build_app
from modelport.serve.http.codec import decode_response, encode_request

from ..serve.conftest import running

SPEC = "size=8x8,grayscale,scale=1/255"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def pngs(x: np.ndarray) -> list[bytes]:
    """Digits tensors (values in [0, 1]) as 8-bit grayscale PNG files."""
    return [encode_png(np.rint(img[0] * 255).astype(np.uint8)) for img in x]


@pytest.fixture(scope="module")
def digits_image_package(tmp_path_factory, digits_cnn, digits_data):
    d = tmp_path_factory.mktemp("digits-image")
    torch.save(digits_cnn.state_dict(), d / "w.pt")
    np.savez(d / "ex.npz", x=digits_data[2][:16])
    (d / "labels.txt").write_text("\n".join(f"digit {i}" for i in range(10)))
    out = d / "digits"
    code = main(
        [
            "convert",
            "--torch",
            "examples.digits_cnn:DigitsCNN",
            "--weights",
            str(d / "w.pt"),
            "--example-inputs",
            str(d / "ex.npz"),
            "--image-preprocess",
            SPEC,
            "--label-file",
            str(d / "labels.txt"),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_convert_writes_and_verifies_image_processing(digits_image_package, capsys):
    pkg = modelport.ModelPackage.load(digits_image_package)
    proc = pkg.manifest["processing"]
    assert [s["kind"] for s in proc["pre"]] == ["image"]
    assert proc["pre"][0]["output"] == "x" and proc["pre"][0]["mode"] == "L"
    assert [s["kind"] for s in proc["post"]] == ["softmax", "top_k"]
    v = proc["verification"]
    assert v["passed"] and v["images"] == 16 and v["max_abs_score_diff"] <= 1e-4
    assert (digits_image_package / "processing" / "labels.txt").is_file()


def test_png_in_label_out_in_python(digits_image_package, digits_cnn, digits_data):
    _, _, x, y = digits_data
    classify = modelport.load(digits_image_package)
    out = classify(pngs(x[:200]))
    with torch.no_grad():
        ref = digits_cnn(torch.from_numpy(np.rint(x[:200] * 255) / 255).float()).argmax(1)
    assert out["label"].tolist() == [f"digit {i}".encode() for i in ref.tolist()]
    accuracy = np.mean(
        [lab.decode() == f"digit {t}" for lab, t in zip(out["label"], y[:200], strict=True)]
    )
    assert accuracy >= 0.95
    assert out["score"].shape == (200,) and (out["score"] > 0).all() and (out["score"] <= 1).all()


def test_a_wrong_preprocessing_fails_the_conversion(tmp_path, digits_cnn, digits_data):
    """An image spec whose scale does not match training (0..255 instead of 0..1) flips labels."""
    import copy

    from modelport.convert import ConvertConfig, Source, convert
    from modelport.errors import VerificationError
    from modelport.processing.config import ProcessingConfig, parse_image_spec

    pconf = ProcessingConfig(
        image=parse_image_spec("size=8x8,grayscale,scale=1,mean=0.9,std=0.01"),
        labels=tuple("0123456789"),
    )
    cfg = ConvertConfig(example={"x": digits_data[2][:16]}, processing=pconf)
    with pytest.raises(VerificationError, match="image processing does not match"):
        convert(Source.torch_module(copy.deepcopy(digits_cnn)), tmp_path / "bad", cfg)
    assert not (tmp_path / "bad").exists()


def test_image_spec_must_fit_the_model(tmp_path, digits_cnn, digits_data, capsys):
    import copy

    from modelport.convert import ConvertConfig, Source, convert
    from modelport.processing.config import ProcessingConfig, parse_image_spec

    pconf = ProcessingConfig(image=parse_image_spec("size=8x8"))  # RGB: 3 channels, model has 1
    cfg = ConvertConfig(example={"x": digits_data[2][:4]}, processing=pconf)
    with pytest.raises(UsageError, match="fix size/crop, grayscale"):
        convert(Source.torch_module(copy.deepcopy(digits_cnn)), tmp_path / "bad", cfg)


@pytest.mark.anyio
async def test_served_png_in_label_out(digits_image_package, digits_data):
    _, _, x, _ = digits_data
    files = pngs(x[:4])
    expected = modelport.load(digits_image_package)(files)["label"].tolist()
    async with running(digits_image_package) as plane:
        app = build_app(plane, HttpSettings())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            name = digits_image_package.name
            meta = (await c.get(f"/v2/models/{name}")).json()
            assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
            assert [o["name"] for o in meta["outputs"]] == ["label", "score"]
            arr = np.empty(4, dtype=object)
            arr[:] = files
            body, headers = encode_request({"image": arr})  # binary tensors, as tritonclient
            r = await c.post(f"/v2/models/{name}/infer", content=body, headers=headers)
            hl = r.headers.get("inference-header-content-length")
            out = decode_response(r.content, int(hl) if hl else None)
            assert out["label"].tolist() == expected
            # TF Serving REST: {"b64": ...}; TorchServe: the file itself as the body
            b64 = [{"b64": base64.b64encode(f).decode()} for f in files[:2]]
            r = await c.post(f"/v1/models/{name}:predict", json={"instances": b64})
            preds = r.json()["predictions"]
            assert [p["label"] for p in preds] == [e.decode() for e in expected[:2]]
            r = await c.post(f"/predictions/{name}", content=files[0])
            assert r.status_code == 200, r.text
            assert r.json()["label"] == expected[0].decode()
            assert isinstance(r.json()["score"], float)
            r = await c.post(f"/predictions/{name}", content=b"GIF89a not really")
            assert r.status_code == 400 and "not a readable image" in r.json()["message"]
            # TF Serving's :classify on the same examples
            r = await c.post(f"/v1/models/{name}:classify", json={"examples": [{"image": b64[0]}]})
            assert r.status_code == 200, r.text
            ((best,),) = r.json()["result"]
            assert best[0] == expected[0].decode() and 0 < best[1] <= 1
            # the bare graph takes the float tensor; V2 classification extension on its logits
            raw = {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [2, 1, 8, 8],
                     "data": x[:2].ravel().tolist()}
                ],
                "outputs": [{"name": "output", "parameters": {"classification": 3}}],
            }  # fmt: skip
            r = await c.post(f"/v2/models/{name}_raw/infer", json=raw)
            assert r.status_code == 200, r.text
            out = r.json()["outputs"][0]
            assert out["datatype"] == "BYTES" and out["shape"] == [2, 3]
            top = [row.split(":") for row in out["data"][::3]]  # the best class of each row
            assert [f"digit {t[1]}" == t[2] for t in top] == [True, True]
            assert [t[2].encode() for t in top] == expected[:2]
            raw["outputs"][0]["parameters"]["classification"] = 0
            r = await c.post(f"/v2/models/{name}_raw/infer", json=raw)
            assert r.status_code == 400 and "class count" in r.json()["error"]


def test_torchserve_target_carries_the_image_processing(tmp_path, digits_image_package):
    import json
    import zipfile

    from modelport.deploy import package_for

    pkg = modelport.ModelPackage.load(digits_image_package)
    r = package_for(pkg, "torchserve", tmp_path / "store")
    with zipfile.ZipFile(r.path) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("modelport.json"))
    assert "processing/labels.txt" in names and manifest["processing"]["pre"][0]["kind"] == "image"
    assert any("handler ran on a sample image: outputs match" in c for c in r.checks)


def test_triton_target_carries_the_image_processing(tmp_path, digits_image_package, digits_data):
    from modelport.deploy import package_for
    from modelport.deploy.triton_ensemble import run_ensemble

    pkg = modelport.ModelPackage.load(digits_image_package)
    r = package_for(pkg, "triton", tmp_path / "triton")
    assert any("ensemble ran on a sample (image in" in c for c in r.checks), r.checks
    images = pngs(digits_data[2][:6])
    request = np.empty((6, 1), dtype=object)
    request[:, 0] = images
    got = run_ensemble(tmp_path / "triton", "digits", {"image": request})
    ref = modelport.load(pkg)({"image": images})
    assert list(got["label"][:, 0]) == list(ref["label"])
    assert np.allclose(got["score"][:, 0], ref["score"], atol=1e-5)
