"""Issue 13, item 7: auth on every ASGI scope (WebSocket handshakes), client strings escaped in
text logs, and the two-token case (inference auth + management API)."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest

from modelport.serve.auth import log_safe, require_token
from modelport.serve.config import ManagementConfig

from .compat_server import running_server, server_config
from .models import make_repo

TOKEN = "inference-token-0123456789abcdef"
MGMT_TOKEN = "management-token-0123456789abcdef"
UPGRADE = (
    b"GET /v2/models/mlp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_log_safe_escapes_control_characters():
    assert log_safe("abc-123") == "abc-123"
    assert log_safe("x\nINFO forged line") == "x\\nINFO forged line"
    assert log_safe("a\r\x1b[31m") == "a\\r\\x1b[31m"
    assert log_safe("é ok") == "é ok"
    assert log_safe("y" * 500).endswith("...") and len(log_safe("y" * 500)) == 203


def test_the_text_log_cannot_be_forged(capsys):
    from modelport.serve.server import setup_logging

    setup_logging("info")
    try:
        logging.getLogger("modelport.serve").info("request %s failed", "id1\nERROR forged")
    finally:
        logging.getLogger("modelport.serve").handlers[:] = []
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "id1\\nERROR forged" in err


def test_websocket_scopes_need_the_token_too():
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["type"])

    guarded = require_token(app, TOKEN)
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "websocket.connect"}

    scope = {"type": "websocket", "path": "/v2/models/mlp", "headers": []}
    asyncio.run(guarded(scope, receive, send))
    assert reached == [] and sent == [{"type": "websocket.close", "code": 1008}]
    scope["headers"] = [(b"authorization", f"Bearer {TOKEN}".encode())]
    asyncio.run(guarded(scope, receive, send))
    assert reached == ["websocket"]


@pytest.fixture(scope="module")
def both_tokens(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("two") / "repo")
    cfg = server_config(
        repo,
        auth_token=TOKEN,
        management=ManagementConfig(port=0, token=MGMT_TOKEN),
        grpc_port=0,
    )
    with running_server(cfg) as info:
        yield info


def test_websocket_upgrades_are_refused_without_a_traceback(both_tokens, caplog):
    port = both_tokens["http_port"]
    statuses = []
    for auth in (b"", f"Authorization: Bearer {TOKEN}\r\n".encode()):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(UPGRADE.replace(b"\r\n\r\n", b"\r\n" + auth + b"\r\n"))
            statuses.append(int(s.recv(4096).split(b" ", 2)[1]))
    # never upgraded (no 101), never a 500: without the token 401, with it a plain GET
    assert statuses == [401, 200]
    assert not [r for r in caplog.records if r.exc_info]


def test_the_management_token_alone_opens_the_repository_routes(both_tokens):
    base = f"http://127.0.0.1:{both_tokens['http_port']}"
    r = httpx.post(base + "/v2/repository/index", headers={"Authorization": f"Bearer {MGMT_TOKEN}"})
    assert r.status_code == 200, r.text
    assert {row["name"] for row in r.json()} >= {"mlp", "ints"}
    r = httpx.post(base + "/v2/repository/index", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403  # the inference token is not the management token
    r = httpx.post(base + "/v2/repository/index")
    assert r.status_code == 401
    # the management token does not open inference
    r = httpx.get(base + "/v2/models/mlp", headers={"Authorization": f"Bearer {MGMT_TOKEN}"})
    assert r.status_code == 401
    r = httpx.get(base + "/v2/models/mlp", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200


def test_the_management_token_alone_opens_the_grpc_repository_rpcs(both_tokens):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{both_tokens['grpc_port']}")
    index = client.get_model_repository_index(
        headers={"authorization": f"Bearer {MGMT_TOKEN}"}, as_json=True
    )
    assert {m["name"] for m in index["models"]} >= {"mlp", "ints"}
    with pytest.raises(InferenceServerException):
        client.get_model_repository_index(headers={"authorization": f"Bearer {TOKEN}"})
    with pytest.raises(InferenceServerException):  # nor does it open inference
        client.get_model_metadata("mlp", headers={"authorization": f"Bearer {MGMT_TOKEN}"})
    assert client.get_model_metadata("mlp", headers={"authorization": f"Bearer {TOKEN}"})
