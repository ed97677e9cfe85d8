"""The TorchServe handlers are real modules of ``modelport.deploy.templates``: imported here and
run step by step (preprocess, inference, postprocess) with a fake TorchServe context over a real
package, and they are exactly the text the .mar ships."""

from __future__ import annotations

import importlib
import io
import json
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

import modelport.processing as mp
from modelport.deploy import package_for
from modelport.deploy.torchserve import handler_source


def _context(path):
    return types.SimpleNamespace(system_properties={"model_dir": str(path)}, manifest={})


def _fresh(name):
    module = importlib.import_module(f"modelport.deploy.templates.{name}")
    return importlib.reload(module)  # module state (the session) starts empty


def test_plain_handler_runs_the_graph(digits_package):
    h = _fresh("torchserve_handler")
    assert h.handle(None, _context(digits_package.path)) is None  # TorchServe's load call
    x = np.asarray(digits_package.samples()[0]["x"], dtype=np.float32)
    ref = digits_package.samples()[1]
    body = json.dumps({"x": x[:2].tolist()}).encode()
    npy = io.BytesIO()
    np.save(npy, x[2:3])
    feeds = h.preprocess([{"body": bytearray(body)}, {"data": npy.getvalue()}])
    assert [f["x"].shape for f in feeds] == [(2, 1, 8, 8), (1, 1, 8, 8)]
    assert feeds[0]["x"].dtype == np.float32
    outs = h.inference(feeds)
    answers = h.postprocess(outs)
    (name,) = ref
    assert np.allclose(answers[0][name], ref[name][:2], atol=1e-4)
    assert np.allclose(answers[1][name], ref[name][2:3], atol=1e-4)
    assert json.loads(json.dumps(answers))  # plain JSON
    assert h.handle([{"body": body}], _context(digits_package.path)) == answers[:1]


def test_processed_handler_runs_the_package_steps(minilm_package):
    h = _fresh("torchserve_processed_handler")
    h.initialize(_context(minilm_package.path))
    texts = ["A short one.", "A much longer sentence, so that the batch has to be padded."]
    rows = [
        {"body": bytearray(texts[0].encode())},
        {"body": json.dumps({"text": texts[1]}).encode()},
    ]
    feeds = h.preprocess(rows)
    assert [f["input_ids"].shape[0] for f in feeds] == [1, 1]
    answers = h.postprocess(h.inference(feeds))
    ref = mp.load(minilm_package.path)(texts)["embedding"]
    got = np.asarray([a["embedding"] for a in answers])
    assert got.shape == (2, 384) and np.abs(got - ref).max() <= 1e-5


@pytest.mark.parametrize(
    ("fixture", "name"),
    [
        ("digits_package", "torchserve_handler.py"),
        ("minilm_package", "torchserve_processed_handler.py"),
    ],
)
def test_the_mar_ships_the_module(request, tmp_path, fixture, name):
    pkg = request.getfixturevalue(fixture)
    r = package_for(pkg, "torchserve", tmp_path / "store")
    with zipfile.ZipFile(r.path) as z:
        shipped = z.read("handler.py").decode()
    assert shipped == handler_source(name)
    module = importlib.import_module(f"modelport.deploy.templates.{name[:-3]}")
    assert shipped == Path(module.__file__).read_text(encoding="utf-8")


def test_the_dockerfile_template_is_a_package_file():
    from modelport.deploy.docker import dockerfile_template

    text = dockerfile_template()
    assert text.startswith("# Built by `modelport package --target docker`")
    assert {"{wheel}", "{http_port}", "{entrypoint}", "{cmd}"} <= set(
        "{" + s.split("}")[0] + "}" for s in text.split("{")[1:]
    )
