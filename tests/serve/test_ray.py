"""``modelport serve --ray``: a local two-node Ray cluster (head + one worker node process),
two models with 2 replicas each behind Ray Serve's HTTP proxy, answering tritonclient and the
TF Serving / TorchServe routes byte for byte like the single-process server, a third model that
fails to load reported like the single-process server does while the others serve, a rolling
update to a new model version under load with zero failed requests, and a broken update that
never replaces a working model. (The checks that need no cluster: test_ray_checks.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from tests.serve.compat_server import running_server, server_config
from tests.serve.models import int64_model, labelled_mlp, mlp_model, write

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow]

X = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2]], dtype=np.float32)
IDS = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
V1, V2 = mlp_model(scale=1.0)[1], mlp_model(scale=2.0)[1]


def answers(base: str, calls: list) -> list[tuple[int, bytes]]:
    """(status, body) of each (method, path, json body) call against ``base``. Ray's proxy gives
    every request an X-Request-Id (V2 answers carry it as "id"): it is fixed, so bodies compare."""
    with httpx.Client(base_url=base, timeout=30, headers={"x-request-id": "r1"}) as client:
        return [
            (r.status_code, r.content)
            for r in (client.request(m, p, json=body) for m, p, body in calls)
        ]


def wait_ready(base: str, model: str, seconds: float = 30) -> None:
    """Until ``model`` answers ready through the proxy (the ingress re-reads the models every 2 s)."""
    deadline = time.monotonic() + seconds
    while httpx.get(f"{base}/v2/models/{model}/ready").status_code != 200:
        assert time.monotonic() < deadline, f"{model} never became ready through Ray"
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every Ray process of the test cluster on 127.0.0.1 (read by Ray when it is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node (separate raylet processes) on loopback, small."""
    try:
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster
    except ImportError as exc:  # CI installs .[all]; say what is missing instead of skipping
        raise RuntimeError("the Ray tests need Ray Serve: pip install 'modelport[ray]'") from exc

    node = {"num_cpus": 2, "object_store_memory": 150 * 1024 * 1024}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        c.add_node(**node)
        ray.init(address=c.address, namespace="modelport", log_to_driver=False)
        c.wait_for_nodes(timeout=120)
        yield c
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray") / "repo"
    write(mlp_model(scale=1.0)[0], root / "mlp" / "1", "mlp")
    write(int64_model(), root / "ints" / "1", "ints")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not a model")  # fails to load
    return root


@pytest.fixture(scope="module")
def deployed(cluster, repo):
    from modelport.serve.ray.config import RayConfig
    from modelport.serve.ray.runner import deploy, undeploy

    config = RayConfig(
        address=cluster.address, replicas=2, replica_cpus=0.25, http_port=_free_port()
    )
    info = deploy(repo, config, timeout_s=240)
    try:
        yield config, info
    finally:
        undeploy(config.app_name)


REPLICAS = {"ingress": 2, "model-broken": 2, "model-ints": 2, "model-mlp": 2}


def test_two_models_two_replicas_each_and_the_failed_one_reported(deployed, repo):
    _, info = deployed
    assert info["models"] == ["broken", "ints", "mlp"]
    assert info["replicas"] == REPLICAS
    assert list(info["failed"]) == ["broken"]
    # the path is the repository's, not the replica's temporary copy
    assert (
        f"'{repo / 'broken' / '1' / 'model.onnx'}' is not a readable ONNX model"
        in (info["failed"]["broken"])
    )
    index = httpx.post(info["http_url"] + "/v2/repository/index", timeout=30).json()
    states = {row["name"]: row["state"] for row in index}
    assert states == {"broken": "FAILED", "ints": "READY", "mlp": "READY"}


def test_tritonclient_against_the_ray_proxy(deployed):
    import tritonclient.http as httpclient

    _, info = deployed
    client = httpclient.InferenceServerClient(info["http_url"].removeprefix("http://"))
    # strict readiness, as the single-process server: not ready while "broken" is not
    assert client.is_server_live() and not client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("ints")
    meta = client.get_model_metadata("mlp")
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    for binary in (True, False):  # Triton's binary extension and plain JSON
        x = httpclient.InferInput("x", list(X.shape), "FP32")
        x.set_data_from_numpy(X, binary_data=binary)
        out = httpclient.InferRequestedOutput("y", binary_data=binary)
        result = client.infer("mlp", [x], outputs=[out])
        np.testing.assert_allclose(result.as_numpy("y"), V1(X), rtol=1e-5, atol=1e-5)
        assert result.get_response()["model_version"] == "1"
    ids = httpclient.InferInput("ids", list(IDS.shape), "INT64")
    ids.set_data_from_numpy(IDS)
    result = client.infer("ints", [ids])
    np.testing.assert_array_equal(result.as_numpy("doubled"), IDS * 2)
    np.testing.assert_array_equal(result.as_numpy("total"), IDS.sum(1, keepdims=True))
    client.close()


def test_answers_like_the_single_process_server(deployed, repo):
    """Same route code, same answers: V2, TF Serving and TorchServe routes, errors included."""
    _, info = deployed
    calls = [
        ("GET", "/v2/models/mlp", None),
        ("GET", "/v2/models/mlp/config", None),
        ("POST", "/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}),
        ("POST", "/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [0] * 6}]}),
        ("POST", "/v2/models/nope/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]}),
        ("GET", "/v1/models/mlp", None),
        ("GET", "/v1/models/mlp/metadata", None),
        ("POST", "/v1/models/mlp:predict", {"instances": X.tolist()}),
        ("POST", "/v1/models/ints:predict", {"inputs": {"ids": IDS.tolist()}}),
        ("POST", "/predictions/mlp", X.tolist()),
        ("POST", "/predictions/mlp/1", X[0].tolist()),
        ("GET", "/ping", None),
        ("GET", "/v2/health/ready", None),
        ("GET", "/v2/models/broken", None),
        ("GET", "/v2/models/broken/ready", None),
        ("POST", "/v2/models/broken/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]}),
        ("GET", "/v1/models/broken", None),
        ("POST", "/predictions/broken", [0.0]),
    ]  # fmt: skip

    from modelport.serve.config import ModelConfig

    # the replicas run ONNX Runtime on their reserved CPUs (1 thread); so does this server
    defaults = ModelConfig(intra_op_threads=1)
    with running_server(server_config(repo, model_defaults=defaults)) as single:
        expected = answers(f"http://127.0.0.1:{single['http_port']}", calls)
    got = answers(info["http_url"], calls)
    for call, want, have in zip(calls, expected, got, strict=True):
        assert have == want, call[:2]
    assert [s for s, _ in got][:5] == [200, 200, 200, 400, 404]
    assert got[-5][0] == 503 and b"not a readable ONNX model" in got[-5][1]
    assert got[-6][0] == 400  # /v2/health/ready: strict readiness, "broken" is not ready


def test_rolling_update_under_load_has_no_failed_requests(deployed, repo, tmp_path):
    import tritonclient.http as httpclient

    from modelport.serve.ray.runner import deploy, replica_counts

    config, info = deployed
    url = info["http_url"].removeprefix("http://")
    stop = threading.Event()
    answers: list[tuple[str, np.ndarray]] = []
    errors: list[BaseException] = []

    def load() -> None:
        client = httpclient.InferenceServerClient(url, network_timeout=60)
        deadline = time.monotonic() + 240  # bounded even if the update hangs
        while not stop.is_set() and time.monotonic() < deadline:
            x = httpclient.InferInput("x", list(X.shape), "FP32")
            x.set_data_from_numpy(X)
            try:
                r = client.infer("mlp", [x])
                answers.append((r.get_response()["model_version"], r.as_numpy("y")))
            except Exception as exc:  # every failure is counted, none retried
                errors.append(exc)
            time.sleep(0.01)
        client.close()

    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    before = len(answers)
    new = tmp_path / "repo"
    shutil.copytree(repo, new)
    write(mlp_model(scale=2.0)[0], new / "mlp" / "2", "mlp")  # latest:1 now serves version 2
    updated = deploy(new, config, timeout_s=240)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(60)

    assert not errors, errors[:3]
    assert before > 0 and len(answers) > before + 10
    seen = set()
    for version, y in answers:  # every answer says truthfully which version computed it
        seen.add(version)
        np.testing.assert_allclose(y, {"1": V1, "2": V2}[version](X), rtol=1e-5, atol=1e-5)
    assert seen == {"1", "2"}
    assert answers[-1][0] == "2"
    assert updated["replicas"] == REPLICAS
    assert replica_counts(config.app_name)["model-mlp"] == 2
    meta = httpx.get(info["http_url"] + "/v2/models/mlp", timeout=30).json()
    assert meta["versions"] == ["2"]


def test_cli_deploys_onto_an_existing_cluster(deployed, repo, capsys):
    """``modelport serve REPO --ray --address ADDR --detach`` deploys (here: updates in place)
    and exits, printing where it answers."""
    import json

    from modelport.cli import main

    config, info = deployed
    port = info["http_url"].rsplit(":", 1)[1]
    argv = ["serve", str(repo), "--ray", "--address", config.address, "--detach"]
    argv += ["--http-port", port, "--replicas", "2", "--replica-cpus", "0.25"]
    assert main(argv) == 0
    ready = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ready["event"] == "ready" and ready["models"] == ["broken", "ints", "mlp"]
    assert ready["replicas"] == REPLICAS and list(ready["failed"]) == ["broken"]
    r = httpx.post(info["http_url"] + "/v1/models/mlp:predict", json={"instances": X.tolist()})
    np.testing.assert_allclose(r.json()["predictions"], V1(X), rtol=1e-5, atol=1e-5)


def test_a_broken_update_never_replaces_a_working_model(deployed, repo, tmp_path):
    """A new version of a model that serves now fails to load: the update fails (exit 2 from the
    CLI) and the replicas of the version that works keep serving it."""
    from modelport.errors import UsageError
    from modelport.serve.ray.runner import deploy

    config, info = deployed
    time.sleep(3)  # replicas of the ingress replaced by the last deploy may still answer for ~2 s
    before = httpx.get(info["http_url"] + "/v2/models/mlp", timeout=30).json()["versions"]
    new = tmp_path / "repo"
    shutil.copytree(repo, new)
    (new / "mlp" / "9").mkdir()
    (new / "mlp" / "9" / "model.onnx").write_bytes(b"garbage")  # latest:1 -> only version 9
    with pytest.raises(UsageError) as err:
        deploy(new, config, timeout_s=180)
    text = err.value.message
    assert "DEPLOY_FAILED: model-mlp: model 'mlp' failed to load" in text
    assert f"'{new / 'mlp' / '9' / 'model.onnx'}' is not a readable ONNX model" in text
    assert "keep serving" in text
    time.sleep(3)
    meta = httpx.get(info["http_url"] + "/v2/models/mlp", timeout=30).json()
    assert meta["versions"] == before
    x = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    r = httpx.post(info["http_url"] + "/v2/models/mlp/infer", json=x, timeout=30).json()
    assert r["model_version"] == before[0]
    want = {"1": V1, "2": V2}[before[0]](X).ravel()
    np.testing.assert_allclose(r["outputs"][0]["data"], want, rtol=1e-5, atol=1e-5)


def test_cli_refuses_replicas_the_cluster_cannot_run(deployed, repo, capsys):
    """Issue 14: 3 models x 2 replicas x 1 CPU + 2 ingress x 0.5 = 7 CPUs on a 4-CPU cluster
    used to wait forever; now it exits 2 at once, with the numbers and what would fit."""
    from modelport.cli import main

    config, info = deployed
    port = info["http_url"].rsplit(":", 1)[1]
    argv = ["serve", str(repo), "--ray", "--address", config.address, "--detach"]
    argv += ["--http-port", port, "--replicas", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "= 7 CPUs requested, 4 CPUs available (of 4)" in err
    assert "--replica-cpus 0.5 (or --replica-cpus auto)" in err


def test_app_builder_for_serve_config_files(deployed, repo):
    """What a Serve config file (``serve deploy``, KubeRay's RayService) imports and runs."""
    from ray import serve

    from modelport.errors import UsageError
    from modelport.serve.ray.runner import _wait_running, app_builder, replica_counts

    config, info = deployed
    args = {"repository": str(repo), "replicas": 1, "replica_cpus": 0.25, "max_batch_size": 4}
    serve.run(app_builder(args), name=config.app_name, route_prefix="/", blocking=False)
    _wait_running(config.app_name, 240)
    assert replica_counts(config.app_name) == {
        "ingress": 1,
        "model-broken": 1,
        "model-ints": 1,
        "model-mlp": 1,
    }
    deadline = time.monotonic() + 20  # the ingress re-reads what the models say every 2 s
    while True:
        cfg = httpx.get(info["http_url"] + "/v2/models/mlp/config", timeout=30).json()
        if cfg["max_batch_size"] == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert cfg["max_batch_size"] == 4
    with pytest.raises(UsageError, match="repository"):
        app_builder({"replicas": 1})
    with pytest.raises(UsageError, match="unknown serving setting"):
        app_builder({"repository": str(repo), "max_batch": 4})


def test_labels_and_the_raw_graph_like_the_single_process_server(deployed, repo, tmp_path):
    """A model with processing (class labels): its answer, its bare graph ``animals_raw`` with
    the V2 classification extension (labels named), TF Serving's :classify, byte for byte as the
    single-process server answers them. (Deployed as an update in place, one replica each.)"""
    import dataclasses

    from modelport.serve.config import ModelConfig
    from modelport.serve.ray.runner import deploy

    config, info = deployed
    new = tmp_path / "repo"
    shutil.copytree(repo, new)
    labelled_mlp(new / "animals" / "1")
    updated = deploy(new, dataclasses.replace(config, replicas=1), timeout_s=240)
    assert updated["models"] == ["animals", "broken", "ints", "mlp"]
    x = {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}
    calls = [
        ("GET", "/v2/models/animals", None),
        ("GET", "/v2/models/animals_raw", None),
        ("GET", "/v2/models/animals_raw/ready", None),
        ("POST", "/v2/models/animals/infer", {"inputs": [x]}),
        ("POST", "/v2/models/animals_raw/infer", {"inputs": [x]}),
        ("POST", "/v2/models/animals_raw/infer", {"inputs": [x], "outputs": [{"name": "y", "parameters": {"classification": 3}}]}),
        ("POST", "/v1/models/animals:classify", {"examples": [{"x": row} for row in X.tolist()]}),
        ("POST", "/v2/models/mlp_raw/infer", {"inputs": [x]}),
    ]  # fmt: skip

    wait_ready(info["http_url"], "animals_raw")
    with running_server(
        server_config(new, model_defaults=ModelConfig(intra_op_threads=1))
    ) as single:
        expected = answers(f"http://127.0.0.1:{single['http_port']}", calls)
    got = answers(info["http_url"], calls)
    for call, want, have in zip(calls, expected, got, strict=True):
        assert have == want, call[:2]
    assert [s for s, _ in got] == [200, 200, 200, 200, 200, 200, 200, 404]
    classified = json.loads(got[5][1])["outputs"][0]["data"]
    assert {row.split(":")[2] for row in classified} == {"cat", "dog", "bird"}


def _picky_model():
    """x [batch, n] -> reshape to [batch, 3, 7]: runs only when n = 21, so the warm-up's
    generated inputs (n = 512) fail while real requests succeed."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "picky",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 7])],
        initializer=[numpy_helper.from_array(np.array([0, 3, 7], np.int64), "shape")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_model_whose_warm_up_rejects_generated_inputs_serves_like_the_single_process(
    deployed, repo, tmp_path
):
    """No samples stored and generated inputs refused: the single-process server serves the
    model unbatched with a warning instead of failing it; the Ray replicas do the same (issue 14:
    this variant had not been tried on a real cluster), and the other models are untouched."""
    import dataclasses

    from modelport.serve.config import ModelConfig
    from modelport.serve.ray.runner import deploy

    config, _ = deployed
    new = tmp_path / "repo"
    shutil.copytree(repo, new)
    write(_picky_model(), new / "picky" / "1", "picky")
    updated = deploy(new, dataclasses.replace(config, replicas=1), timeout_s=240)
    assert "picky" in updated["models"] and "picky" not in updated["failed"]
    x = np.arange(42, dtype=np.float32).reshape(2, 21)
    body = {
        "inputs": [{"name": "x", "shape": [2, 21], "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    calls = [
        ("GET", "/v2/models/picky/ready", None),
        ("POST", "/v2/models/picky/infer", body),
        ("POST", "/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}),
    ]  # fmt: skip

    wait_ready(updated["http_url"], "picky")
    with running_server(
        server_config(new, model_defaults=ModelConfig(intra_op_threads=1))
    ) as single:
        expected = answers(f"http://127.0.0.1:{single['http_port']}", calls)
    got = answers(updated["http_url"], calls)
    assert got == expected
    assert [s for s, _ in got] == [200, 200, 200]
    y = json.loads(got[1][1])["outputs"][0]
    assert y["shape"] == [2, 3, 7] and y["data"] == x.ravel().tolist()


def test_engine_override_reaches_the_replicas_like_the_single_process_server(
    deployed, repo, tmp_path
):
    """``serve --ray --engine SPEC``: every replica loads its model on that engine over the
    serving section (a model whose config.json names an engine keeps its own, as in one process);
    /v2/models/NAME/config says what ran and the answers are the single-process server's with
    the same --engine, byte for byte. (Last in this file: it leaves the models on OpenVINO.)"""

    pytest.importorskip("openvino")
    from modelport.cli import main
    from modelport.runtime import native_precisions
    from modelport.serve.config import ModelConfig

    precision = "bf16" if "bf16" in native_precisions("openvino") else "fp32"
    spec = "openvino" if precision == "fp32" else "openvino:bf16"
    config, info = deployed
    new = tmp_path / "repo"
    shutil.copytree(repo, new)
    write(mlp_model(scale=2.0)[0], new / "pinned" / "1", "pinned")
    (new / "pinned" / "config.json").write_text(json.dumps({"engine": "ort"}))
    # through the command line, as a user runs it (an update in place, one replica each)
    port = info["http_url"].rsplit(":", 1)[1]
    argv = ["serve", str(new), "--ray", "--address", config.address, "--detach"]
    argv += ["--http-port", port, "--replicas", "1", "--replica-cpus", "0.25", "--engine", spec]
    assert main(argv) == 0

    x = {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}
    calls = [
        ("POST", "/v2/models/mlp/infer", {"inputs": [x]}),
        ("POST", "/v2/models/pinned/infer", {"inputs": [x]}),
        ("POST", "/v1/models/mlp:predict", {"instances": X.tolist()}),
        ("POST", "/predictions/mlp", X.tolist()),
    ]

    def answers(base: str) -> list[tuple[int, bytes]]:
        with httpx.Client(base_url=base, timeout=30, headers={"x-request-id": "r1"}) as client:
            return [
                (r.status_code, r.content)
                for r in (client.request(m, p, json=b) for m, p, b in calls)
            ]

    def engines(base: str) -> dict[str, dict]:
        return {
            name: httpx.get(f"{base}/v2/models/{name}/config", timeout=30).json()
            for name in ("mlp", "pinned")
        }

    deadline = time.monotonic() + 20  # the ingress re-reads what the models say every 2 s
    while True:
        ray_configs = engines(info["http_url"])
        if "pinned" in ray_configs and ray_configs["mlp"].get("backend") == "openvino":
            break
        assert time.monotonic() < deadline, f"the replicas do not run {spec}: {ray_configs}"
        time.sleep(0.5)
    ran = ray_configs["mlp"]["parameters"]["engine"]
    assert ran["engine"] == "openvino" and ran["precision"] == precision and ran["threads"] == 1
    assert ray_configs["pinned"]["parameters"]["engine"]["engine"] == "ort"
    assert ray_configs["pinned"]["backend"] == "onnxruntime"
    override = {"engine": "openvino", "precision": precision}
    with running_server(
        server_config(new, model_defaults=ModelConfig(intra_op_threads=1), engine=override)
    ) as single:
        base = f"http://127.0.0.1:{single['http_port']}"
        expected, single_configs = answers(base), engines(base)
    for name in ("mlp", "pinned"):
        assert (
            ray_configs[name]["parameters"]["engine"]
            == single_configs[name]["parameters"]["engine"]
        ), name
        assert ray_configs[name]["backend"] == single_configs[name]["backend"], name
    got = answers(info["http_url"])
    for call, want, have in zip(calls, expected, got, strict=True):
        assert have == want, call[:2]
    assert [s for s, _ in got] == [200, 200, 200, 200]
    # OpenVINO's answer, not ONNX Runtime's fp32 one (bf16 rounds; fp32 equals it closely)
    y = np.asarray(json.loads(got[0][1])["outputs"][0]["data"], np.float32).reshape(2, 3)
    np.testing.assert_allclose(y, V1(X), rtol=2e-2, atol=2e-2)
