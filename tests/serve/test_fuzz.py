"""A bounded property-based fuzz of the whole HTTP surface (issue 13): requests generated from
the OpenAPI document (paths, methods, path parameters) with hostile bodies and headers, sent to a
real server over sockets. No answer may be a 5xx that the document does not list for the
operation (so never a 500), no answer may carry a traceback, and the server answers correctly
afterwards. Derandomized and bounded (a few hundred examples, well under two minutes)."""

from __future__ import annotations

import gzip
import json
import re
import urllib.parse
import zlib

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport.serve.config import ManagementConfig
from modelport.serve.http.openapi import openapi_document

from .compat_server import running_server, server_config
from .models import make_repo, scaled_model, write

pytestmark = pytest.mark.timeout(300)

DOC = openapi_document()
MGMT_TOKEN = "management-token-0123456789abcdef"
OPERATIONS = [
    (path, method, op)
    for path, item in DOC["paths"].items()
    for method, op in item.items()
    if method in ("get", "put", "post", "delete")
]
NAMES = ["mlp", "ints", "flags", "text", "fixed", "scaled", "nope", "..", "a b", "%2e%2e", "x" * 80]
VERSIONS = ["1", "2", "99", "0", "x", "-1", "1_0", "01", "9" * 30]
LABELS = ["stable", "canary", "", "x\ny"]
DATATYPES = ["FP32", "FP64", "FP16", "INT64", "INT32", "UINT8", "BOOL", "BYTES", "BF16", "NOPE"]
SOURCE_PATH = re.compile(r"(/[\w.-]+){2,}\.(py|h|cc|cpp)\b")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=40,
)
shapes = st.lists(st.integers(-2, 6) | st.sampled_from([2**31, 2**62]), max_size=4)
tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "ids", "scale", "text", "flags", "gain", "nope"]),
        "shape": shapes | json_values,
        "datatype": st.sampled_from(DATATYPES) | st.text(max_size=5),
    },
    optional={
        "data": st.lists(
            st.floats(-1e6, 1e6) | st.integers(-5, 5) | st.text(max_size=3), max_size=30
        )
        | json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-4, 64) | json_values}
        ),
    },
)
v2_doc = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3) | json_values},
    optional={
        "id": st.text(max_size=10) | json_values,
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=6)}), max_size=2)
        | json_values,
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_output", "timeout"]), json_values
        ),
    },
)
predict_doc = st.fixed_dictionaries(
    {},
    optional={
        "instances": json_values,
        "inputs": json_values,
        "signature_name": st.sampled_from(["serving_default", "other"]) | json_values,
    },
)


@st.composite
def bodies(draw):
    kind = draw(st.sampled_from(["v2", "predict", "json", "bytes", "npy", "empty"]))
    if kind == "v2":
        raw = json.dumps(draw(v2_doc)).encode()
        if draw(st.booleans()):  # binary tensors after the JSON
            return raw, raw + draw(st.binary(max_size=64)), len(raw)
        return raw, raw, None
    if kind == "predict":
        raw = json.dumps(draw(predict_doc)).encode()
    elif kind == "json":
        raw = json.dumps(draw(json_values)).encode()
    elif kind == "npy":
        raw = (
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': "
            + draw(st.sampled_from([b"(1, 4)", b"(99999999999, 4)", b"(-1,)", b"()", b"(1, 4, 1)"]))
            + b", }"
            + draw(st.binary(max_size=32))
        )
    elif kind == "bytes":
        raw = draw(st.binary(max_size=200))
    else:
        raw = b""
    return raw, raw, None


@st.composite
def requests(draw):
    path, method, op = draw(st.sampled_from(OPERATIONS))
    values = {
        "name": draw(st.sampled_from(NAMES)),
        "version": draw(st.sampled_from(VERSIONS)),
        "label": draw(st.sampled_from(LABELS)),
    }
    url = path
    for key, value in values.items():
        url = url.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
    _, body, header_length = draw(bodies())
    headers = {}
    encoding = draw(st.sampled_from([None, None, "gzip", "deflate", "br", "identity", "zstd"]))
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    if encoding:
        headers["content-encoding"] = encoding
    hl = draw(st.sampled_from([None, "len", "garbage", "-3", "1_0", "99999999999999999999"]))
    if hl == "len" and header_length is not None:
        headers["inference-header-content-length"] = str(header_length)
    elif hl not in (None, "len"):
        headers["inference-header-content-length"] = hl
    params = {}
    if path.startswith("/models"):
        headers["authorization"] = f"Bearer {MGMT_TOKEN}"
        for key in ("min_worker", "batch_size", "response_timeout", "url", "limit"):
            if draw(st.booleans()):
                params[key] = draw(
                    st.sampled_from(["1", "0", "-1", "nan", "inf", "1.5", "x", "/etc"])
                )
    return path, method.upper(), url, body, headers, params, op


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("fuzz") / "repo")
    write(scaled_model(), repo / "scaled" / "1", "scaled")
    cfg = server_config(repo, management=ManagementConfig(port=0, token=MGMT_TOKEN))
    with running_server(cfg) as info, httpx.Client(timeout=60) as client:
        yield info, client


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(req=requests())
def test_fuzzed_requests_never_get_an_undocumented_5xx(server, req):
    info, client = server
    path, method, url, body, headers, params, op = req
    port = info["management_port"] if path.startswith("/models") else info["http_port"]
    r = client.request(
        method, f"http://127.0.0.1:{port}{url}", content=body, headers=headers, params=params
    )
    if r.status_code >= 500:
        assert str(r.status_code) in op["responses"], (method, url, headers, body[:200], r.text)
    assert r.status_code != 500 or path == "/ping", r.text
    assert "Traceback" not in r.text and not SOURCE_PATH.search(r.text), r.text


def test_the_server_is_alive_and_exact_after_the_fuzz(server):
    info, client = server
    base = f"http://127.0.0.1:{info['http_port']}"
    assert client.get(base + "/v2/health/live").status_code == 200
    ids = np.array([[1, 2, 3, 4]], np.int64)
    doc = {
        "inputs": [
            {"name": "ids", "shape": [1, 4], "datatype": "INT64", "data": ids.ravel().tolist()},
            {"name": "scale", "shape": [1, 1], "datatype": "FP32", "data": [0.5]},
        ]
    }
    r = client.post(base + "/v2/models/scaled/infer", content=orjson.dumps(doc))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [0.5, 1.0, 1.5, 2.0]


def test_the_openapi_document_is_valid_served_and_shipped(server):
    from pathlib import Path

    from openapi_spec_validator import validate

    validate(DOC)
    info, client = server
    served = client.get(f"http://127.0.0.1:{info['http_port']}/openapi.json").json()
    assert served == DOC
    shipped = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
    shipped["info"]["version"] = DOC["info"]["version"]
    assert shipped == DOC, "regenerate: python -m modelport.serve.http.openapi > docs/openapi.json"
