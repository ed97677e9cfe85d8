"""The management API on its own port, against a real server: the token (file mode, 401s),
register / list / describe / scale / set-default / unregister, the V2 repository extension,
attempts to escape the repository, and registering from URLs (off, allow-list, redirects)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import stat
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelport.serve.config import ManagementConfig
from tests.serve.compat_server import running_server, server_config
from tests.serve.models import mlp_model, write

pytestmark = pytest.mark.timeout(240)

TOKEN = "management-token-for-tests-0123456789"
X = np.array([[1, 2, 3, 4]], dtype=np.float32)


def small_repo(root: Path) -> Path:
    write(mlp_model(scale=1.0)[0], root / "mlp" / "1", "mlp")
    write(mlp_model(scale=2.0)[0], root / "mlp" / "2", "mlp")
    (root / "mlp" / "config.json").write_text(json.dumps({"version_policy": "all"}))
    return root


class Api:
    """Clients for the main port and the management port of one running server."""

    def __init__(self, info: dict, token: str = TOKEN) -> None:
        self.info = info
        auth = {"authorization": f"Bearer {token}"}
        self.mgmt = httpx.Client(
            base_url=f"http://127.0.0.1:{info['management_port']}", headers=auth, timeout=60
        )
        self.main = httpx.Client(base_url=f"http://127.0.0.1:{info['http_port']}", timeout=30)

    def predict(self, path: str = "/predictions/mlp") -> np.ndarray:
        r = self.main.post(path, json=X.tolist())
        assert r.status_code == 200, r.text
        return np.asarray(r.json())


@contextlib.contextmanager
def management_server(root: Path, **management):
    management.setdefault("token", TOKEN)
    config = server_config(root, management=ManagementConfig(port=0, **management))
    with running_server(config) as info:
        api = Api(info)
        try:
            yield api
        finally:
            api.mgmt.close()
            api.main.close()


@pytest.fixture
def api(tmp_path):
    with management_server(small_repo(tmp_path / "repo")) as api:
        yield api


def y(scale: float) -> np.ndarray:
    return mlp_model(scale=scale)[1](X)


# --- the token ------------------------------------------------------------------------------


def test_a_generated_token_is_written_for_the_owner_only_and_removed_at_stop(tmp_path):
    token_file = tmp_path / "secrets" / "mgmt.token"
    root = small_repo(tmp_path / "repo")
    config = server_config(root, management=ManagementConfig(port=0, token_file=token_file))
    with running_server(config) as info:
        assert info["management_token_file"] == str(token_file)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        token = token_file.read_text().strip()
        assert len(token) >= 32
        base = f"http://127.0.0.1:{info['management_port']}"
        r = httpx.get(base + "/models", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert [m["modelName"] for m in r.json()["models"]] == ["mlp"]
    assert not token_file.exists()


def test_a_token_file_with_loose_permissions_is_tightened(tmp_path):
    from modelport.serve.management import write_token_file

    path = tmp_path / "t"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_token_file(path, "new-token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "new-token\n"
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(Exception, match="cannot write"):
        write_token_file(link, "x")  # never follows a symlink planted at the token path


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token-wrong-token-wrong"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": TOKEN},
        {"authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_missing_or_bad_tokens_are_refused(api, headers):
    base = api.mgmt.base_url
    for method, path in [
        ("GET", "/models"),
        ("POST", "/models?url=/etc"),
        ("DELETE", "/models/mlp"),
        ("POST", "/v2/repository/index"),
        ("POST", "/v2/repository/models/mlp/unload"),
    ]:
        r = httpx.request(method, f"{base}{path}", headers=headers, timeout=30)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        if path.startswith("/models"):
            assert r.json()["code"] == 401 and r.json()["type"] == "UnauthorizedException"
    np.testing.assert_allclose(api.predict(), y(2.0), rtol=1e-5)  # nothing was changed


def test_tokens_too_short_are_rejected_by_the_config():
    with pytest.raises(Exception, match="at least 16"):
        ManagementConfig(token="short")


# --- register, list, describe ---------------------------------------------------------------


def test_register_a_package_directory_and_an_onnx_file(api, tmp_path):
    src = write(mlp_model(scale=3.0)[0], tmp_path / "src" / "pkg", "mlp")
    r = api.mgmt.post("/models", params={"url": str(src), "model_name": "mlp"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == 'Model "mlp" Version: 3 registered with 1 initial workers'
    [desc] = api.mgmt.get("/models/mlp/3").json()
    assert Path(desc["modelUrl"]).parts[-2:] == ("mlp", "3")
    assert (Path(desc["modelUrl"]) / "model.onnx").is_file()
    np.testing.assert_allclose(api.predict("/predictions/mlp/3"), y(3.0), rtol=1e-5)
    np.testing.assert_allclose(api.predict(), y(3.0), rtol=1e-5)  # the new default

    import onnx

    onnx_file = tmp_path / "src" / "brand-new.onnx"
    onnx.save(mlp_model(scale=5.0)[0], onnx_file)
    params = {"url": str(onnx_file), "batch_size": "4", "initial_workers": "2"}
    r = api.mgmt.post("/models", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["status"].startswith('Model "brand-new" Version: 1 registered with')
    np.testing.assert_allclose(api.predict("/predictions/brand-new"), y(5.0), rtol=1e-5)
    [desc] = api.mgmt.get("/models/brand-new").json()
    assert (desc["minWorkers"], desc["batchSize"], desc["state"]) == (2, 4, "READY")
    config = json.loads((Path(desc["modelUrl"]).parent / "config.json").read_text())
    assert config == {"max_batch_size": 4, "instances": 2}


def test_registering_an_existing_version_is_a_conflict(api, tmp_path):
    src = write(mlp_model(scale=3.0)[0], tmp_path / "src", "mlp")
    r = api.mgmt.post("/models", params={"url": str(src), "model_version": "2"})
    assert r.status_code == 409, r.text
    assert r.json()["type"] == "ConflictStatusException"
    np.testing.assert_allclose(api.predict("/predictions/mlp/2"), y(2.0), rtol=1e-5)


def test_a_model_that_does_not_load_is_not_registered(api, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    r = api.mgmt.post("/models", params={"url": str(bad), "model_name": "broken"})
    assert r.status_code == 400 and "ONNX" in r.json()["message"]
    repo = Path(api.mgmt.get("/models").json()["models"][0]["modelUrl"]).parent
    assert not (repo / "broken").exists()
    r = api.mgmt.post("/models", params={"url": str(tmp_path / "missing")})
    assert r.status_code == 400 and "no package" in r.json()["message"]
    assert api.mgmt.post("/models").json()["message"].startswith("give the model with url=")


def test_list_pages_and_describe(api, tmp_path):
    import onnx

    for name in ("a", "b"):
        onnx.save(mlp_model()[0], tmp_path / f"{name}.onnx")
        assert api.mgmt.post("/models", params={"url": str(tmp_path / f"{name}.onnx")}).is_success
    page = api.mgmt.get("/models", params={"limit": 2}).json()
    assert [m["modelName"] for m in page["models"]] == ["a", "b"]
    assert page["nextPageToken"] == "2"
    page = api.mgmt.get("/models", params={"limit": 2, "next_page_token": 2}).json()
    assert [m["modelName"] for m in page["models"]] == ["mlp"] and "nextPageToken" not in page

    [default] = api.mgmt.get("/models/mlp").json()
    assert default["modelVersion"] == "2" and default["default"] is True
    assert default["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [d["modelVersion"] for d in api.mgmt.get("/models/mlp/all").json()] == ["1", "2"]
    assert api.mgmt.get("/models/mlp/7").status_code == 404
    assert api.mgmt.get("/models/nope").json()["type"] == "ModelNotFoundException"
    assert api.mgmt.get("/models", params={"limt": 2}).status_code == 400


# --- set-default, scale, unregister ---------------------------------------------------------


def test_set_default_version(api):
    r = api.mgmt.put("/models/mlp/1/set-default")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == 'Default version successfully updated for model "mlp" to "1"'
    np.testing.assert_allclose(api.predict(), y(1.0), rtol=1e-5)
    r = api.main.post("/v2/models/mlp/infer", json={
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X.ravel().tolist()}]
    })  # fmt: skip
    assert r.json()["model_version"] == "1"
    assert api.mgmt.put("/models/mlp/5/set-default").status_code == 404


def test_scale_instances(api):
    r = api.mgmt.put("/models/mlp", params={"min_worker": 3, "max_worker": 3})
    assert r.status_code == 200, r.text
    descs = api.mgmt.get("/models/mlp/all").json()
    assert [d["minWorkers"] for d in descs] == [3, 3]
    assert all(len(d["workers"]) == (1 if d["execution"] == "inline" else 3) for d in descs)
    np.testing.assert_allclose(api.predict(), y(2.0), rtol=1e-5)
    for params in ({"min_worker": 0}, {"min_worker": 3, "max_worker": 1}, {"min_worker": "x"}, {}):
        r = api.mgmt.put("/models/mlp", params=params)
        assert r.status_code == 400, (params, r.text)


def test_unregister_a_version_then_the_model(api):
    r = api.mgmt.delete("/models/mlp/2")
    assert r.status_code == 200, r.text
    kept = Path(r.json()["kept_at"])
    assert (kept / "model.onnx").is_file() and ".unregistered" in kept.parts
    np.testing.assert_allclose(api.predict(), y(1.0), rtol=1e-5)
    assert api.main.post("/predictions/mlp/2", json=X.tolist()).status_code == 404
    assert api.mgmt.delete("/models/mlp/2").status_code == 404
    assert api.mgmt.delete("/models/mlp").status_code == 200
    assert api.main.post("/predictions/mlp", json=X.tolist()).status_code == 404
    assert api.mgmt.get("/models").json() == {"models": []}


def test_v2_repository_extension_on_the_management_port(api):
    rows = api.mgmt.post("/v2/repository/index").json()
    assert {(r["name"], r["version"], r["state"]) for r in rows} == {
        ("mlp", "1", "READY"),
        ("mlp", "2", "READY"),
    }
    assert api.mgmt.post("/v2/repository/models/mlp/unload").status_code == 200
    assert api.main.post("/predictions/mlp", json=X.tolist()).status_code == 503
    assert api.mgmt.post("/v2/repository/models/mlp/load").status_code == 200
    np.testing.assert_allclose(api.predict(), y(2.0), rtol=1e-5)
    r = api.mgmt.post("/v2/repository/models/nope/load")
    assert r.status_code == 404 and "error" in r.json()
    r = api.mgmt.post("/v2/repository/models/..hidden/unload")
    assert r.status_code == 400 and "invalid model name" in r.json()["error"]


# --- escaping the repository ----------------------------------------------------------------


@pytest.mark.parametrize(
    "params, words",
    [
        ({"model_name": "../evil"}, "invalid model name"),
        ({"model_name": "/tmp/evil"}, "invalid model name"),
        ({"model_name": "a/b"}, "invalid model name"),
        ({"model_name": ".."}, "invalid model name"),
        ({"model_name": ".staging-x"}, "invalid model name"),
        ({"model_name": "ok", "model_version": "../../1"}, "invalid model version"),
        ({"model_name": "ok", "model_version": "/1"}, "invalid model version"),
        ({"model_name": "ok", "model_version": "-1"}, "invalid model version"),
        ({"model_name": "ok", "model_version": "01"}, "invalid model version"),
    ],
)
def test_register_cannot_escape_the_repository(api, tmp_path, params, words):
    src = write(mlp_model()[0], tmp_path / "src", "x")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    r = api.mgmt.post("/models", params={"url": str(src), **params})
    assert r.status_code == 400, r.text
    assert words in r.json()["message"]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_name_and_version_rules():
    from modelport.errors import InputError
    from modelport.serve.names import check_label, check_model_name, check_version, inside

    for ok in ("mlp", "resnet-50_int8.v2", "A" * 128, "0day"):
        assert check_model_name(ok) == ok
    for bad in (
        "",
        ".",
        "..",
        ".hidden",
        "-x",
        "a/b",
        "a\\b",
        "/abs",
        "A" * 129,
        "a b",
        "é",
        "a\n",
    ):
        with pytest.raises(InputError):
            check_model_name(bad)
    assert check_version("0") == 0 and check_version(12) == 12
    for bad in ("", "01", "-1", "+1", " 1", "1_0", "1.0", "١", True, 2**63, None):
        with pytest.raises(InputError):
            check_version(bad)
    assert check_label("canary-2") == "canary-2"
    for bad in ("", "2x", "../x", "a" * 65):
        with pytest.raises(InputError):
            check_label(bad)
    root = Path("/srv/repo")
    assert inside(root, "mlp", "3") == root.resolve() / "mlp" / "3"
    for parts in (("..",), ("mlp", ".."), ("/etc",), ("mlp/../..",)):
        with pytest.raises(InputError):
            inside(root, *parts)


def test_a_symlinked_model_directory_cannot_lead_outside(api, tmp_path):
    repo = Path(api.mgmt.get("/models").json()["models"][0]["modelUrl"]).parent
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "linked").symlink_to(outside)
    src = write(mlp_model()[0], tmp_path / "src", "x")
    r = api.mgmt.post("/models", params={"url": str(src), "model_name": "linked"})
    assert r.status_code == 400 and "outside the model repository" in r.json()["message"]
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    "method, path, status",
    [
        # an encoded '/' decodes into more path segments: no management route has that shape
        ("GET", "/models/..%2F..%2Fetc", 404),
        # a single '..' segment reaches the route and is refused as a model name
        ("DELETE", "/models/%2E%2E", 400),
        ("DELETE", "/models/mlp/..%2F1", 404),
        ("PUT", "/models/mlp/1%2F..%2F2/set-default", 404),
    ],
)
def test_names_in_paths_are_validated(api, method, path, status):
    r = api.mgmt.request(method, path)
    assert r.status_code == status, r.text
    assert api.mgmt.get("/models/mlp/all").status_code == 200


def test_a_single_package_server_refuses_repository_changes(tmp_path):
    pkg = write(mlp_model()[0], tmp_path / "pkg", "mlp")
    with management_server(pkg) as api:
        r = api.mgmt.post("/models", params={"url": str(pkg), "model_name": "other"})
        assert r.status_code == 400 and "one package" in r.json()["message"]
        assert api.mgmt.get("/models/pkg").json()[0]["state"] == "READY"


# --- registering from URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "hosts, url, status, words",
    [
        ((), "https://models.example.com/m.onnx", 403, "off"),
        (("models.example.com",), "https://evil.example.com/m.onnx", 403, "allow-list"),
        (("models.example.com",), "https://models.example.com.evil.io/m.onnx", 403, "allow-list"),
        (("models.example.com",), "ftp://models.example.com/m.onnx", 400, "http and https"),
        (("models.example.com",), "file:///etc/passwd", 400, "http and https"),
    ],
)
def test_url_registration_is_refused_unless_allow_listed(tmp_path, hosts, url, status, words):
    with management_server(small_repo(tmp_path / "repo"), allow_url_hosts=hosts) as api:
        r = api.mgmt.post("/models", params={"url": url, "model_name": "remote"})
        assert r.status_code == status, r.text
        assert words in r.json()["message"]
        assert not (tmp_path / "repo" / "remote").exists()


def test_check_url_is_exact_about_hosts():
    from modelport.errors import InputError
    from modelport.serve.errors import ForbiddenError
    from modelport.serve.management import check_url

    allowed = ("models.example.com", "127.0.0.1")
    assert check_url("https://MODELS.example.com:8443/a/m.onnx", allowed)
    assert check_url("http://127.0.0.1:9/m.onnx", allowed)
    for bad in (
        "https://user@evil.com/m.onnx",
        "https://models.example.com@evil.com/m.onnx",
        "https://sub.models.example.com/m.onnx",
        "https://127.0.0.2/m.onnx",
    ):
        with pytest.raises(ForbiddenError):
            check_url(bad, allowed)
    with pytest.raises(InputError):
        check_url("gopher://models.example.com/", allowed)


@contextlib.contextmanager
def local_file_server(directory: Path, redirect_to: str | None = None):
    """An HTTP server on 127.0.0.1 serving ``directory`` (or redirecting every GET)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def do_GET(self):  # noqa: N802
            if redirect_to:
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_download_from_an_allow_listed_loopback_host_and_redirect_checks(tmp_path, monkeypatch):
    import onnx

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    files = tmp_path / "files"
    files.mkdir()
    onnx.save(mlp_model(scale=4.0)[0], files / "m.onnx")
    root = small_repo(tmp_path / "repo")
    with management_server(root, allow_url_hosts=("127.0.0.1",)) as api:
        with local_file_server(files) as base:
            r = api.mgmt.post("/models", params={"url": f"{base}/m.onnx", "model_name": "web"})
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(api.predict("/predictions/web"), y(4.0), rtol=1e-5)
        with local_file_server(files, redirect_to="http://localhost:1/m.onnx") as base:
            r = api.mgmt.post("/models", params={"url": f"{base}/m.onnx", "model_name": "hop"})
            assert r.status_code == 403 and "localhost" in r.json()["message"]
            assert not (root / "hop").exists()


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--management-token", "short"], "at least 16"),
        (["--allow-url-host", "https://models.example.com/"], "bare host name"),
        (["--management-port", "70000"], "between 0 and 65535"),
    ],
)
def test_cli_rejects_bad_management_options(tmp_path, capsys, args, words):
    from modelport.cli import main

    root = small_repo(tmp_path / "repo")
    assert main(["serve", str(root), "--http-port", "0", "--no-grpc", *args]) == 2
    assert words in capsys.readouterr().err.replace("\n", " ")


def test_cli_serves_the_management_api_with_a_generated_token(tmp_path):
    import signal
    import subprocess
    import sys

    root = small_repo(tmp_path / "repo")
    token_file = tmp_path / "mgmt.token"
    exe = str(Path(sys.executable).parent / "modelport")
    cmd = [exe, "serve", str(root), "--http-port", "0",
           "--no-grpc", "--management-port", "0", "--management-token-file", str(token_file),
           "--shutdown-grace", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready" and ready["management_token_file"] == str(token_file)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        base = f"http://127.0.0.1:{ready['management_port']}"
        auth = {"authorization": f"Bearer {token_file.read_text().strip()}"}
        r = httpx.get(base + "/models/mlp", headers=auth, timeout=30)
        assert r.status_code == 200 and r.json()[0]["modelVersion"] == "2"
        assert httpx.get(base + "/models", timeout=30).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert not token_file.exists()


@pytest.mark.parametrize(
    "params",
    [{"response_timeout": "nan"}, {"response_timeout": "inf"}, {"batch_size": "1.5"},
     {"initial_workers": "100000"}, {"max_batch_delay": "-1"}],
)  # fmt: skip
def test_registration_parameters_are_range_checked(api, tmp_path, params):
    src = write(mlp_model(scale=3.0)[0], tmp_path / "src" / "pkg", "mlp")
    r = api.mgmt.post("/models", params={"url": str(src), "model_name": "other", **params})
    assert r.status_code == 400, r.text
    assert api.mgmt.put("/models/mlp", params={"min_worker": 100000}).status_code == 400
    np.testing.assert_allclose(api.predict(), y(2.0), rtol=1e-5)  # still serving
