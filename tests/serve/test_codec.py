"""HTTP (V2 JSON + binary extension) and gRPC codecs: round trips and malformed input."""

import numpy as np
import orjson
import pytest

from modelport.errors import InputError
from modelport.serve.http.codec import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from modelport.serve.types import InferenceResponse, RequestedOutput, Tensor

ARRAYS = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    "f16": np.arange(4, dtype=np.float16).reshape(2, 2),
    "f64": np.linspace(0, 1, 3),
    "i8": np.array([-1, 2], dtype=np.int8),
    "i64": np.array([[1, -(2**40)]], dtype=np.int64),
    "u16": np.array([1, 65535], dtype=np.uint16),
    "b": np.array([[True, False, True]]),
    "s": np.array([[b"a", "héllo".encode(), b""]], dtype=object),
}


@pytest.mark.parametrize("binary", [True, False])
def test_request_round_trip_every_datatype(binary):
    body, headers = encode_request(ARRAYS, binary=binary)
    hl = headers.get("inference-header-content-length")
    req = decode_request(body, int(hl) if hl else None, "m", "2")
    assert req.model_name == "m" and req.model_version == "2"
    got = {t.name: t for t in req.inputs}
    for name, arr in ARRAYS.items():
        t = got[name]
        assert t.shape == list(arr.shape)
        if name == "s":
            assert [x if isinstance(x, bytes) else x.encode() for x in t.data.ravel()] == list(
                arr.ravel()
            )
        else:
            assert t.data.dtype == arr.dtype
            np.testing.assert_array_equal(t.data, arr)


def test_binary_inputs_are_views_on_the_body():
    body, headers = encode_request({"x": np.ones((64, 64), np.float32)}, binary=True)
    req = decode_request(body, int(headers["inference-header-content-length"]), "m", None)
    assert not req.inputs[0].data.flags.owndata


@pytest.mark.parametrize("binary_output", [True, False])
def test_response_round_trip(binary_output):
    outs = [Tensor(n, dt, list(a.shape), a) for n, dt, a in (
        ("y", "FP32", ARRAYS["f32"]), ("s", "BYTES", np.array([["x", "ÿ"]], dtype=object)),
        ("b", "BOOL", ARRAYS["b"]), ("h", "FP16", ARRAYS["f16"]),
    )]  # fmt: skip
    body, headers = encode_request({"x": ARRAYS["f32"]}, binary=True, binary_outputs=binary_output)
    req = decode_request(body, int(headers["inference-header-content-length"]), "m", None)
    resp = InferenceResponse("m", "1", outs, id="r1")
    out, hl, ctype = encode_response(resp, req)
    assert (hl is not None) == binary_output
    assert ctype == ("application/octet-stream" if binary_output else "application/json")
    decoded = decode_response(out, hl)
    np.testing.assert_allclose(decoded["y"], ARRAYS["f32"], rtol=1e-6)
    np.testing.assert_array_equal(decoded["b"], ARRAYS["b"])
    np.testing.assert_array_equal(decoded["h"], ARRAYS["f16"])
    s = [x.decode() if isinstance(x, bytes) else x for x in decoded["s"].ravel()]
    assert s == ["x", "ÿ"]
    assert orjson.loads(out[:hl] if hl else out)["id"] == "r1"


def test_per_output_binary_overrides_the_request_default():
    req = decode_request(
        orjson.dumps({
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}],
        }),
        None, "m", None,
    )  # fmt: skip
    assert req.outputs == [RequestedOutput("a", {"binary_data": False}), RequestedOutput("b", {})]
    a = np.array([1.5], np.float32)
    resp = InferenceResponse("m", "1", [Tensor("a", "FP32", [1], a), Tensor("b", "FP32", [1], a)])
    body, hl, _ = encode_response(resp, req)
    head = orjson.loads(body[:hl])
    assert head["outputs"][0]["data"] == [1.5]
    assert head["outputs"][1]["parameters"] == {"binary_data_size": 4}
    assert len(body) == hl + 4


def _json(doc):
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("body", "hl", "match"),
    [
        (b"{not json", None, "does not parse"),
        (b"[1, 2]", None, "must be an object"),
        (_json({"inputs": []}), None, "non-empty list"),
        (_json({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}), None, "needs 2"),
        (_json({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}), None, "cannot be read as FP32"),
        (_json({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}), None, "non-negative"),
        (_json({"inputs": [{"name": "x", "shape": [1], "datatype": "BF16", "data": [1]}]}), None, "BF16 has no ONNX Runtime"),
        (_json({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}), None, "neither 'data'"),
        (_json({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}), None, "no Inference-Header"),
        (_json({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}) + b"1234", -1, "Inference-Header-Content-Length"),
        (_json({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": [1, 2]}]}), None, "strings"),
    ],
)  # fmt: skip
def test_malformed_requests_are_input_errors(body, hl, match):
    if hl == -1:  # a header length past the end of the body
        hl = len(body) + 10
    with pytest.raises(InputError, match=match):
        decode_request(body, hl, "m", None)


def test_binary_framing_errors():
    head = _json(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    )
    with pytest.raises(InputError, match="only 4 bytes"):
        decode_request(head + b"1234", len(head), "m", None)
    with pytest.raises(InputError, match="after the last binary tensor"):
        decode_request(head + b"12345678xx", len(head), "m", None)
    head = _json(
        {
            "inputs": [
                {
                    "name": "s",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 6},
                }
            ]
        }
    )
    with pytest.raises(InputError, match="past the end"):
        decode_request(head + b"\x09\x00\x00\x00ab", len(head), "m", None)


def test_grpc_codec_round_trip_raw_and_typed():
    from modelport.serve.grpc.codec import request_to_internal, response_from_internal
    from modelport.serve.grpc.generated import grpc_service_pb2 as pb

    req = pb.ModelInferRequest(model_name="m", model_version="3", id="q")
    t = req.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    t.contents.fp32_contents.extend([1, 2, 3, 4])
    s = req.inputs.add(name="s", datatype="BYTES", shape=[2])
    s.contents.bytes_contents.extend([b"a", b"bc"])
    req.parameters["timeout"].int64_param = 5
    internal = request_to_internal(req)
    assert internal.model_version == "3" and internal.parameters == {"timeout": 5}
    np.testing.assert_array_equal(internal.inputs[0].data, [[1, 2], [3, 4]])
    assert list(internal.inputs[1].data) == [b"a", b"bc"]

    raw = pb.ModelInferRequest(model_name="m")
    raw.inputs.add(name="x", datatype="INT64", shape=[3])
    raw.raw_input_contents.append(np.array([1, 2, 3], np.int64).tobytes())
    np.testing.assert_array_equal(request_to_internal(raw).inputs[0].data, [1, 2, 3])
    raw.raw_input_contents[0] = b"123"
    with pytest.raises(InputError, match="raw bytes"):
        request_to_internal(raw)

    resp = InferenceResponse("m", "1", [
        Tensor("y", "FP32", [2], np.array([0.5, 1], np.float32)),
        Tensor("t", "BYTES", [1], np.array(["hé"], dtype=object)),
    ], id="q")  # fmt: skip
    out = response_from_internal(resp)
    assert [o.name for o in out.outputs] == ["y", "t"]
    np.testing.assert_array_equal(np.frombuffer(out.raw_output_contents[0], np.float32), [0.5, 1])
    assert out.raw_output_contents[1] == b"\x03\x00\x00\x00" + "hé".encode()


def test_grpc_values_in_another_contents_field_are_named():
    """A scalar INT64 sample rate sent in int_contents (the INT32 field): the error said only
    'has 0 elements but shape [] needs 1'; it now names the field the values belong in."""
    from modelport.serve.grpc.codec import request_to_internal
    from modelport.serve.grpc.generated import grpc_service_pb2 as pb

    req = pb.ModelInferRequest(model_name="vad")
    t = req.inputs.add(name="sr", datatype="INT64", shape=[])
    t.contents.int_contents.extend([16000])
    with pytest.raises(
        InputError, match=r"0 elements in int64_contents .*filled \['int_contents'\]"
    ):
        request_to_internal(req)
    t.contents.ClearField("int_contents")
    t.contents.int64_contents.extend([16000])
    assert request_to_internal(req).inputs[0].data.shape == ()
