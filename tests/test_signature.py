from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import InputError
from modelport.signature import Signature, TensorSpec

SIG = Signature(
    (
        TensorSpec("ids", "int64", ("batch", "sequence")),
        TensorSpec("mask", "int64", ("batch", "sequence")),
    ),
    (TensorSpec("out", "float32", ("batch", 8)),),
)


def test_roundtrip_dict():
    assert Signature.from_dict(SIG.to_dict()) == SIG
    assert SIG.symbolic_dims() == ["batch", "sequence"]


def test_check_feed_accepts_matching_inputs():
    SIG.check_feed({"ids": np.zeros((2, 5), np.int64), "mask": np.ones((2, 5), np.int64)})


@pytest.mark.parametrize(
    ("feed", "match"),
    [
        ({"ids": np.zeros((2, 5), np.int64)}, "missing input"),
        (
            {
                "ids": np.zeros((2, 5), np.int64),
                "mask": np.ones((2, 5), np.int64),
                "x": np.zeros(1),
            },
            "unknown input",
        ),
        (
            {"ids": np.zeros((2, 5), np.int32), "mask": np.ones((2, 5), np.int64)},
            "'ids' has dtype int32, expected int64",
        ),
        ({"ids": np.zeros((2,), np.int64), "mask": np.ones((2, 5), np.int64)}, "1 dimensions"),
        ({"ids": np.zeros((2, 5), np.int64), "mask": np.ones((2, 6), np.int64)}, "sequence=6"),
    ],
)
def test_check_feed_errors_name_the_input(feed, match):
    with pytest.raises(InputError, match=match):
        SIG.check_feed(feed)


def test_fixed_dim_mismatch():
    spec = TensorSpec("x", "float32", ("batch", 4))
    with pytest.raises(InputError, match="size 5 on axis 1, expected 4"):
        spec.check(np.zeros((1, 5), np.float32))


def test_from_onnx_names_unnamed_dims(tiny_onnx):
    import onnx

    model = onnx.load(tiny_onnx)
    model.graph.input[0].type.tensor_type.shape.dim[0].ClearField("dim_param")
    sig = Signature.from_onnx(model)
    assert sig.inputs[0].shape == ("dim_x_0", 4)
    assert sig.outputs[0] == TensorSpec("y", "float32", ("batch", 3))
