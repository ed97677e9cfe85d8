"""TF Serving gRPC with the official client (tensorflow-serving-api + tf.make_tensor_proto)
against a real server: Predict, GetModelMetadata, GetModelStatus, labels, errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from tests.serve.compat_server import running_server, server_config
from tests.serve.models import labelled_mlp, make_repo, mlp_model

pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
grpc = pytest.importorskip("grpc")

pytestmark = pytest.mark.timeout(300)

X = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2], [0, 0, 0, 1]], dtype=np.float32)


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("tfgrpc") / "repo")
    (root / "mlp" / "config.json").write_text(
        json.dumps({"version_policy": "all", "version_labels": {"stable": 1, "canary": 2}})
    )
    labelled_mlp(root / "animals" / "1")
    with running_server(server_config(root, tfserving_grpc_port=0)) as info:
        assert info["tfserving_grpc_port"]
        with grpc.insecure_channel(f"127.0.0.1:{info['tfserving_grpc_port']}") as ch:
            yield ch


@pytest.fixture(scope="module")
def stub(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(name, version=None, label=None, **inputs):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = "serving_default"
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(v if hasattr(v, "dtype") and hasattr(v, "tensor_shape")
                               else tf.make_tensor_proto(v))  # fmt: skip
    return req


def test_predict_with_make_tensor_proto(tf, stub):
    reply = stub.Predict(predict_request("mlp", x=X), timeout=30)
    assert reply.model_spec.name == "mlp" and reply.model_spec.version.value == 2
    assert reply.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(
        tf.make_ndarray(reply.outputs["y"]), mlp_model(scale=2.0)[1](X), rtol=1e-5, atol=1e-5
    )


def test_version_and_label_select_the_model(tf, stub):
    for kw, scale in [
        ({"version": 1}, 1.0),
        ({"label": "stable"}, 1.0),
        ({"label": "canary"}, 2.0),
    ]:
        reply = stub.Predict(predict_request("mlp", x=X, **kw), timeout=30)
        assert reply.model_spec.version.value == int(scale)
        y = tf.make_ndarray(reply.outputs["y"])
        np.testing.assert_allclose(y, mlp_model(scale=scale)[1](X), rtol=1e-5, atol=1e-5)


def test_typed_fields_are_read_like_make_ndarray(tf, stub):
    from tensorflow.core.framework import tensor_pb2, types_pb2

    tp = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for d in X.shape:
        tp.tensor_shape.dim.add(size=d)
    tp.float_val.extend(X.ravel().tolist())
    reply = stub.Predict(predict_request("mlp", version=1, x=tp), timeout=30)
    want = mlp_model(scale=1.0)[1](X)
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), want, rtol=1e-5, atol=1e-5)
    # one value fills the whole shape (what make_tensor_proto does for a repeated value)
    ids = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64)
    ids.tensor_shape.dim.add(size=2)
    ids.tensor_shape.dim.add(size=3)
    ids.int64_val.append(7)
    reply = stub.Predict(predict_request("ints", ids=ids), timeout=30)
    assert tf.make_ndarray(reply.outputs["doubled"]).tolist() == [[14] * 3] * 2
    assert tf.make_ndarray(reply.outputs["total"]).tolist() == [[21]] * 2


def test_strings_bools_and_output_filter(tf, stub):
    text = np.array([[b"a", "é".encode()]], dtype=object)
    reply = stub.Predict(predict_request("text", text=text), timeout=30)
    assert tf.make_ndarray(reply.outputs["same"]).tolist() == [[b"a", "é".encode()]]
    flags = np.array([[True, False, False, True]])
    reply = stub.Predict(predict_request("flags", flags=flags), timeout=30)
    assert tf.make_ndarray(reply.outputs["negated"]).tolist() == [[False, True, True, False]]
    req = predict_request("ints", ids=np.array([[1, 2, 3]], dtype=np.int64))
    req.output_filter.append("total")
    reply = stub.Predict(req, timeout=30)
    assert list(reply.outputs) == ["total"]
    assert tf.make_ndarray(reply.outputs["total"]).tolist() == [[6]]


def test_metadata_is_a_packed_signature_def_map(stub):
    from tensorflow_serving.apis import get_model_metadata_pb2

    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "mlp"
    req.model_spec.version.value = 1
    reply = stub.GetModelMetadata(req, timeout=30)
    assert reply.model_spec.version.value == 1
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(sig_map)
    sig = sig_map.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert [d.size for d in sig.inputs["x"].tensor_shape.dim] == [-1, 4]
    assert sig.inputs["x"].dtype == 1  # DT_FLOAT
    bad = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["graph"])
    bad.model_spec.name = "mlp"
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(bad, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_model_status(channel):
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "mlp"
    reply = stub.GetModelStatus(req, timeout=30)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state) for s in reply.model_version_status] == [
        (2, available),
        (1, available),
    ]
    assert all(s.status.error_code == 0 for s in reply.model_version_status)
    req.model_spec.version_label = "stable"
    reply = stub.GetModelStatus(req, timeout=30)
    assert [s.version for s in reply.model_version_status] == [1]


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"name": "nope", "x": X}, "NOT_FOUND"),
        ({"name": "mlp", "version": 9, "x": X}, "NOT_FOUND"),
        ({"name": "mlp", "label": "beta", "x": X}, "NOT_FOUND"),
        ({"name": "../mlp", "x": X}, "INVALID_ARGUMENT"),
        ({"name": "mlp", "x": X[:, :3]}, "INVALID_ARGUMENT"),
        ({"name": "mlp", "x": X.astype(np.float64)}, "INVALID_ARGUMENT"),
        ({"name": "mlp", "z": X}, "INVALID_ARGUMENT"),
    ],
)
def test_errors_carry_grpc_codes(stub, kwargs, code):
    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(predict_request(name, **kwargs), timeout=30)
    assert info.value.code() == getattr(grpc.StatusCode, code), info.value.details()


def classify_request(name, rows, context=None):
    from tensorflow_serving.apis import classification_pb2

    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = name
    examples = req.input.example_list.examples
    if context is not None:
        req.input.example_list_with_context.context.features.feature[context[0]].float_list.value.extend(context[1])  # fmt: skip
        examples = req.input.example_list_with_context.examples
    for row in rows:
        ex = examples.add()
        for key, values in row.items():
            ex.features.feature[key].float_list.value.extend(values)
    return req


def test_classify_answers_the_labels(stub, tmp_path):
    import modelport

    reply = stub.Classify(classify_request("animals", [{"x": r} for r in X]), timeout=30)
    assert reply.model_spec.name == "animals" and reply.model_spec.version.value == 1
    got = [[(c.label, c.score) for c in cl.classes] for cl in reply.result.classifications]
    ref = modelport.load(labelled_mlp(tmp_path / "ref"))({"x": X})
    assert len(got) == len(X) and all(len(row) == 2 for row in got)
    assert [[label for label, _ in row] for row in got] == [
        [v.decode() for v in row] for row in ref["label"]
    ]
    np.testing.assert_allclose([[s for _, s in row] for row in got], ref["score"], atol=1e-6)
    assert all(row[0][1] >= row[1][1] for row in got)  # best first
    # the context's features go into every example
    with_context = stub.Classify(classify_request("animals", [{}, {}], ("x", X[0])), timeout=30)
    second = with_context.result.classifications[1].classes
    assert [c.label for c in second] == [label for label, _ in got[0]]


@pytest.mark.parametrize(
    ("name", "rows", "code", "message"),
    [
        ("mlp", [{"x": X[0]}], "UNIMPLEMENTED", "class labels"),
        ("animals", [{"x": X[0][:3]}], "INVALID_ARGUMENT", ""),
        ("animals", [{"z": X[0]}], "INVALID_ARGUMENT", "not an input of this model"),
        ("animals", [], "INVALID_ARGUMENT", ""),
    ],
)
def test_classify_errors(stub, name, rows, code, message):
    with pytest.raises(grpc.RpcError) as info:
        stub.Classify(classify_request(name, rows), timeout=30)
    assert info.value.code() == getattr(grpc.StatusCode, code), info.value.details()
    assert message in info.value.details()


def test_without_the_package_the_port_stays_closed_and_the_log_says_why(
    tmp_path, monkeypatch, caplog
):
    from modelport.serve.grpc import tfserving

    def missing():
        raise ImportError("No module named 'tensorflow_serving'")

    monkeypatch.setattr(tfserving, "load_stubs", missing)
    root = make_repo(tmp_path / "repo")
    caplog.set_level(logging.WARNING, logger="modelport.serve")
    monkeypatch.setattr(logging.getLogger("modelport.serve"), "propagate", True)
    with running_server(server_config(root, tfserving_grpc_port=0)) as info:
        assert info["tfserving_grpc_port"] is None
        assert info["http_port"]
    assert "TF Serving gRPC API is off" in caplog.text
    assert "modelport[tensorflow]" in caplog.text


# --- decoding off the event loop -----------------------------------------------------------

BIG_TEXT = np.array([[b"t" * 64, b"u" * 64]] * 1000, dtype=object)  # ~130 KB: over 64 KB


def _decode_thread() -> bool:
    import threading

    return threading.current_thread().name.startswith("modelport-decode")


def test_large_requests_are_parsed_and_decoded_off_the_event_loop(stub, monkeypatch):
    from modelport.serve.grpc import tfserving

    where = []
    real_parse, real_tensors = tfserving.parse_request, tfserving.predict_tensors

    def parse(message_type, data):
        where.append(("parse", _decode_thread()))
        return real_parse(message_type, data)

    def tensors(inputs, stubs, split):
        where.append(("tensors", _decode_thread()))
        return real_tensors(inputs, stubs, split)

    monkeypatch.setattr(tfserving, "parse_request", parse)
    monkeypatch.setattr(tfserving, "predict_tensors", tensors)
    small = stub.Predict(predict_request("mlp", x=X), timeout=30)  # 48 bytes: on the loop
    big = stub.Predict(predict_request("text", text=BIG_TEXT), timeout=30)
    assert list(small.outputs["y"].tensor_shape.dim)[0].size == 3
    assert list(big.outputs["same"].string_val) == list(BIG_TEXT.ravel())
    assert where == [("parse", False), ("tensors", False), ("parse", True), ("tensors", True)]


def test_a_small_request_is_answered_while_a_big_one_decodes(stub, monkeypatch):
    """The big request's decode waits (in the decode thread) until the small request has been
    answered: were it on the event loop, the small one could not be."""
    import threading

    from modelport.serve.grpc import tfserving

    started, released = threading.Event(), threading.Event()
    real_tensors = tfserving.predict_tensors

    def tensors(inputs, stubs, split):
        if "text" in inputs:  # the big one
            started.set()
            released.wait(60)
        return real_tensors(inputs, stubs, split)

    monkeypatch.setattr(tfserving, "predict_tensors", tensors)
    answers: list = []
    big = threading.Thread(
        target=lambda: answers.append(
            stub.Predict(predict_request("text", text=BIG_TEXT), timeout=90)
        )
    )
    big.start()
    try:
        assert started.wait(60), "the big request's decode did not start"
        small = stub.Predict(predict_request("mlp", x=X), timeout=30)
        assert not released.is_set()  # answered while the big one was still decoding
        assert list(small.outputs["y"].tensor_shape.dim)[0].size == 3
    finally:
        released.set()
        big.join(90)
    (reply,) = answers
    assert list(reply.outputs["same"].string_val) == list(BIG_TEXT.ravel())


def test_bytes_that_are_not_a_request_and_unknown_models_first(channel):
    predict = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as info:
        predict(b"\xff\xff\xff\xff", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid tensorflow.serving.PredictRequest" in info.value.details()
    # a model that is not served is NOT_FOUND whatever its inputs hold (as the HTTP routes)
    bad = predict_request("nope", x=X)
    bad.inputs["x"].tensor_content = b"123"
    with pytest.raises(grpc.RpcError) as info:
        grpc_stub(channel).Predict(bad, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def grpc_stub(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


# --- tensors' bytes split off the message without a copy ---------------------------------------


def _stubs():
    from modelport.serve.grpc.tfserving import load_stubs

    return load_stubs()


def _decode_both(data: bytes):
    """(protobuf's parse + conversion, the split path's) of a serialized PredictRequest: each a
    (model name, output_filter, {input: (datatype, array)}) or the error's type and message."""
    from modelport.serve.grpc import tfserving

    stubs = _stubs()

    def plain():
        msg = tfserving.parse_request(stubs.predict_pb2.PredictRequest, data)
        arrays = {k: tfserving.tensor_to_numpy(tp, k, stubs) for k, tp in msg.inputs.items()}
        return msg.model_spec.name, list(msg.output_filter), arrays

    def split():
        msg, side = tfserving.parse_predict(data, stubs)
        tensors = tfserving.predict_tensors(msg.inputs, stubs, side)
        arrays = {t.name: (t.datatype, t.data) for t in tensors}
        return msg.model_spec.name, list(msg.output_filter), arrays

    out = []
    for fn in (plain, split):
        try:
            out.append(fn())
        except Exception as exc:  # noqa: BLE001 - compared below
            out.append((type(exc).__name__, str(exc)))
    return out


def _same(a, b) -> bool:
    if len(a) == 2 or len(b) == 2:  # errors
        return a == b
    if a[:2] != b[:2] or a[2].keys() != b[2].keys():
        return False
    for k in a[2]:
        (da, xa), (db, xb) = a[2][k], b[2][k]
        if da != db or xa.dtype != xb.dtype or xa.shape != xb.shape:
            return False
        if xa.dtype == object:
            if xa.tolist() != xb.tolist():
                return False
        elif not np.array_equal(xa, xb, equal_nan=True):
            return False
    return True


def _tensor_bytes(rng, tf) -> bytes:
    """One TensorProto, serialized: tensor_content or typed values (packed, sometimes in two
    pieces that protobuf merges), a dtype and shape that match or not."""
    kind = rng.choice(["content", "float_val", "double_val", "int64_val", "string", "empty"])
    shape = [int(d) for d in rng.integers(0, 4, size=rng.integers(1, 3))]
    n = int(np.prod(shape))
    if kind == "string":
        return tf.make_tensor_proto(
            np.array([b"ab"] * n, dtype=object).reshape(shape)
        ).SerializeToString()
    dtype = {"float_val": np.float32, "double_val": np.float64, "int64_val": np.int64}.get(
        kind, rng.choice([np.float32, np.float64, np.int32])
    )
    arr = (rng.standard_normal(n) * 100).astype(dtype).reshape(shape)
    if kind == "content":
        tp = tf.make_tensor_proto(arr)
        if rng.random() < 0.2:  # a tensor_content that does not fit the shape
            tp.tensor_content = tp.tensor_content + b"\x00"
        earlier = type(tp)(tensor_content=b"\x01" * 4 * n)  # merged: the later content wins
        return (earlier.SerializeToString() if rng.random() < 0.3 else b"") + tp.SerializeToString()
    tp = tf.make_tensor_proto(arr[:0].reshape([0]))  # dtype only
    tp.ClearField("tensor_shape")
    for d in shape:
        tp.tensor_shape.dim.add(size=d)
    count = int(rng.integers(0, n + 2))  # fewer values: padded; more: refused
    values = (rng.standard_normal(count) * 100).astype(dtype).tolist()
    if kind == "empty":
        return tp.SerializeToString()
    first = type(tp)()
    getattr(first, kind).extend(values[: count // 2])
    second = type(tp)()
    getattr(second, kind).extend(values[count // 2 :])
    return tp.SerializeToString() + first.SerializeToString() + second.SerializeToString()


def _entry(key: bytes, tensor: bytes) -> bytes:
    from modelport.serve.grpc.tfserving import _length_delimited

    return _length_delimited(2, _length_delimited(1, key) + _length_delimited(2, tensor))


def test_the_split_decodes_every_request_as_protobuf_does(tf):
    from tensorflow_serving.apis import predict_pb2

    rng = np.random.default_rng(7)
    for case in range(400):
        head = predict_pb2.PredictRequest()
        head.model_spec.name = "m"
        head.output_filter.append("y")
        data = head.SerializeToString()
        for _ in range(int(rng.integers(1, 4))):
            key = rng.choice([b"x", b"y", b""])  # repeated keys: the later entry wins
            data += _entry(key, _tensor_bytes(rng, tf))
        if case % 5 == 0:  # cut somewhere: both refuse it, or both read the same
            data = data[: int(rng.integers(1, len(data) + 1))]
        plain, split = _decode_both(data)
        assert _same(plain, split), (case, data, plain, split)


def test_odd_wire_forms_are_left_to_protobuf(tf):
    # unpacked float_val (one wire-type-5 field per value), a value before its key, unknown
    # fields, a non-UTF-8 key: the same answers as protobuf's (or the same refusal)
    one = tf.make_tensor_proto(np.zeros(0, np.float32)).SerializeToString()
    shape2 = tf.make_tensor_proto(np.zeros(2, np.float32))
    shape2.ClearField("tensor_content")
    unpacked = shape2.SerializeToString() + b"".join(
        bytes([5 << 3 | 5]) + np.float32(v).tobytes() for v in (1.5, -2.0)
    )
    content = tf.make_tensor_proto(np.arange(4, dtype=np.float32)).SerializeToString()
    from modelport.serve.grpc.tfserving import _length_delimited

    cases = [
        _entry(b"x", unpacked),
        _length_delimited(2, _length_delimited(2, content) + _length_delimited(1, b"x")),
        _entry(b"x", content + b"\xf8\x07\x01"),  # unknown varint field 127 in the tensor
        _entry(b"\xff", content),
        _entry(b"x", one) + _entry(b"x", content) + _entry(b"x", unpacked),
        b"\x12\x05\x0a\x01x\x12",  # an entry cut inside its value
    ]
    for data in cases:
        plain, split = _decode_both(data)
        assert _same(plain, split), (data, plain, split)


def test_tensor_bytes_are_read_in_place(tf):
    from tensorflow_serving.apis import predict_pb2

    from modelport.serve.grpc import tfserving

    x = np.random.default_rng(0).standard_normal((1000, 4)).astype(np.float32)
    packed = tf.make_tensor_proto(np.zeros(0, np.float32))
    packed.ClearField("tensor_shape")
    for d in x.shape:
        packed.tensor_shape.dim.add(size=d)
    packed.float_val.extend(x.ravel().tolist())
    for tp in (tf.make_tensor_proto(x), packed):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "mlp"
        req.inputs["x"].CopyFrom(tp)
        data = req.SerializeToString()
        msg, side = tfserving.parse_predict(data, _stubs())
        assert msg.ByteSize() < 100  # the 16 KB of values are not in the parsed message
        (t,) = tfserving.predict_tensors(msg.inputs, _stubs(), side)
        np.testing.assert_array_equal(t.data, x)
        assert np.shares_memory(t.data, np.frombuffer(data, np.uint8))  # a view: no copy
