"""``serve --ray`` without a Ray cluster: the CPU check and ``--replica-cpus auto``, the options
each mode refuses, the bounded wait for deployments, and a failed model seen through the
ingress's remote repository exactly as the single-process server reports it."""

from __future__ import annotations

import types

import numpy as np
import pytest

from modelport.errors import UsageError
from modelport.serve.ray.capacity import auto_cpus, check_fits, demand, resolve_cpus
from modelport.serve.ray.config import RayConfig

from .conftest import running
from .models import int64_model, labelled_mlp, mlp_model, write


@pytest.fixture
def two_models(tmp_path):
    root = tmp_path / "repo"
    write(mlp_model()[0], root / "mlp" / "1", "mlp")
    write(int64_model(), root / "ints" / "1", "ints")
    return root


# --- CPUs ---------------------------------------------------------------------------------


def test_the_issue_case_does_not_fit_and_says_what_would():
    """2 models x 2 replicas x 1 CPU + 2 ingress x 0.5 on a 2-CPU machine: issue 14 item 3."""
    config = RayConfig(replicas=2, replica_cpus=1.0)
    assert demand(config, 2).total == 5.0
    with pytest.raises(UsageError) as err:
        check_fits(config, 2, available=2.0, total=2.0)
    text = err.value.message
    assert "2 model(s) x 2 replica(s) x 1 CPU + 2 ingress replica(s) x 0.5 CPU = 5 CPUs" in text
    assert "2 CPUs available (of 2)" in text
    assert "--replica-cpus 0.33 (or --replica-cpus auto)" in text
    assert "--replicas 1 --replica-cpus 0.75" in text
    # and what it suggests does fit
    for fixed in (
        RayConfig(replicas=2, replica_cpus=0.33),
        RayConfig(replicas=1, replica_cpus=0.75),
    ):
        assert check_fits(fixed, 2, available=2.0, total=2.0) == ""


def test_fewer_replicas_suggested_when_they_fit():
    with pytest.raises(UsageError, match="--replicas 3;"):
        check_fits(RayConfig(replicas=4, replica_cpus=1.0), 2, available=8.0, total=8.0)


@pytest.mark.parametrize(
    "available, models, replicas, ingress, expected",
    [
        (2.0, 2, 2, 2, 0.33),  # share 1/3 < 0.5: everyone gets the share
        (2.0, 2, 1, 1, 0.75),  # ingress takes 0.5, the models the rest
        (8.0, 2, 1, 1, 3.75),
        (1.0, 1, 1, 1, 0.5),
        (0.01, 3, 2, 2, 0.0),  # not even 0.01 each
    ],
)
def test_auto_cpus_formula(available, models, replicas, ingress, expected):
    cpus = auto_cpus(available, models, replicas, ingress)
    assert cpus == expected
    if cpus:
        config = RayConfig(replicas=replicas, replica_cpus=cpus)
        assert demand(config, models).total <= available + 1e-9


def test_replica_cpus_auto_resolves_and_autoscaling_shares_among_max():
    config = resolve_cpus(RayConfig(replicas=2, replica_cpus="auto"), 2, 2.0)
    assert config.replica_cpus == 0.33 and config.threads == 1
    scaled = resolve_cpus(RayConfig(autoscale=(1, 4), replica_cpus="auto"), 1, 10.0)
    assert scaled.replica_cpus == 2.0  # (10 - 4 x 0.5) / 4
    assert check_fits(scaled, 1, 10.0, 10.0) == ""  # even at MAX replicas
    with pytest.raises(UsageError, match="not enough"):
        resolve_cpus(RayConfig(replica_cpus="auto"), 3, 0.0)
    with pytest.raises(UsageError, match="'auto'"):
        RayConfig(replica_cpus="many")


def test_autoscaling_beyond_the_cluster_is_a_warning():
    warning = check_fits(RayConfig(autoscale=(1, 8), replica_cpus=1.0), 1, 4.0, 4.0)
    assert "autoscaling to 8 replicas needs 12 CPUs, 4 are available" in warning


def test_local_ray_that_cannot_fit_exits_2_before_starting_ray(two_models, monkeypatch, capsys):
    from modelport.cli import main
    from modelport.serve.ray import runner

    def connect(config):
        raise AssertionError("Ray must not be started")

    monkeypatch.setattr(runner, "local_cpus", lambda: 2)
    monkeypatch.setattr(runner, "connect", connect)
    argv = ["serve", str(two_models), "--ray", "--replicas", "2", "--replica-cpus", "1"]
    assert main([*argv, "--http-port", "0"]) == 2
    err = capsys.readouterr().err
    assert "5 CPUs requested, 2 CPUs available" in err and "--replica-cpus auto" in err
    assert "Traceback" not in err


# --- options the chosen mode would ignore ------------------------------------------------


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--autoscale", "3"], "MIN:MAX"),
        (["--autoscale", "4:2"], "MIN <= MAX"),
        (["--replicas", "0"], "replicas must be >= 1"),
        (["--detach"], "--detach needs --address"),
        (["--replica-cpus", "lots"], "a number of CPUs or 'auto'"),
        (["--auth-token", "x" * 20], "--auth-token cannot be used with --ray"),
        (["--grpc-port", "9001"], "--grpc-port cannot be used with --ray"),
        (["--tfserving-grpc-port", "9500"], "--tfserving-grpc-port cannot be used with --ray"),
        (["--management-port", "9081"], "--management-port cannot be used with --ray"),
        (["--management-token", "t" * 20], "--management-token cannot be used with --ray"),
        (["--allow-url-host", "example.com"], "--allow-url-host cannot be used with --ray"),
        (["--poll", "5"], "--poll cannot be used with --ray"),
        (["--max-connections", "64"], "--max-connections cannot be used with --ray"),
        (["--trust"], "--trust cannot be used with --ray"),
    ],
)
def test_ray_usage_errors(two_models, capsys, extra, words):
    from modelport.cli import main

    assert main(["serve", str(two_models), "--ray", *extra]) == 2
    captured = capsys.readouterr()
    assert words in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_tls_and_env_token_are_refused_under_ray(two_models, tmp_path, capsys, monkeypatch):
    from modelport.cli import main

    pem = tmp_path / "k.pem"
    pem.write_text("x")
    argv = ["serve", str(two_models), "--ray", "--tls-cert", str(pem), "--tls-key", str(pem)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--tls-cert cannot be used with --ray" in err
    assert "--tls-key cannot be used with --ray" in err
    monkeypatch.setenv("MODELPORT_AUTH_TOKEN", "y" * 20)
    assert main(["serve", str(two_models), "--ray"]) == 2
    assert "--auth-token (set by $MODELPORT_AUTH_TOKEN)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--replicas", "2"], "--replicas only applies with --ray"),
        (["--autoscale", "1:2", "--detach"], "--autoscale, --detach only apply with --ray"),
        (["--replica-cpus", "auto"], "--replica-cpus only applies with --ray"),
        (["--address", "auto"], "--address only applies with --ray"),
    ],
)
def test_ray_options_without_ray_are_refused(two_models, capsys, extra, words):
    from modelport.cli import main

    assert main(["serve", str(two_models), *extra]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(
    "spec, engine",
    [("openvino", {"engine": "openvino", "precision": "fp32"}), ("package", {}), (None, {})],
)
def test_the_engine_flag_is_handed_to_the_ray_deploy(two_models, monkeypatch, capsys, spec, engine):
    """``serve --ray --engine SPEC`` (refused before): the override reaches ``deploy``, which
    binds it into every model deployment (tests/serve/test_ray.py runs it on a cluster)."""
    from modelport.cli import main
    from modelport.serve.ray import runner

    seen: dict = {}

    def deploy(repository, config, defaults=None, **kwargs):
        seen.update(kwargs)
        return {"http_url": "http://127.0.0.1:1", "models": ["ints", "mlp"], "failed": {}}

    monkeypatch.setattr(runner, "connect", lambda config: False)
    monkeypatch.setattr(runner, "deploy", deploy)
    argv = ["serve", str(two_models), "--ray", "--address", "auto", "--detach"]
    assert main(argv + (["--engine", spec] if spec else [])) == 0
    assert seen["engine"] == engine
    assert '"event": "ready"' in capsys.readouterr().out


def test_app_builder_takes_an_engine_spec(two_models, monkeypatch):
    """A Serve config file's ``args: {engine: openvino}``: the same override as --engine; an
    unknown engine or a precision the engine lacks is a UsageError before anything deploys."""
    from modelport.serve.ray import packages, runner

    seen: dict = {}

    def build_app(repository, config, defaults=None, apis=None, strict=frozenset(), engine=None):
        seen["engine"] = engine
        return "app", [], {}

    monkeypatch.setattr(runner, "build_app", build_app)
    monkeypatch.setattr(packages, "retain", lambda app, keys: None)
    args = {"repository": str(two_models), "replica_cpus": 0.25}
    assert runner.app_builder({**args, "engine": "openvino"}) == "app"
    assert seen["engine"] == {"engine": "openvino", "precision": "fp32"}
    assert runner.app_builder(args) == "app" and seen["engine"] == {}
    with pytest.raises(UsageError, match="engine 'tpu' is not one of"):
        runner.app_builder({**args, "engine": "tpu"})
    with pytest.raises(UsageError, match="no bf16"):
        runner.app_builder({**args, "engine": "ort:bf16"})
    monkeypatch.undo()

    def connect(config):
        raise AssertionError("Ray must not be started")

    monkeypatch.setattr(runner, "connect", connect)
    with pytest.raises(UsageError, match="engine 'tpu' is not one of"):
        runner.serve_on_ray(two_models, RayConfig(), engine={"engine": "tpu"})


# --- waiting for the deployments ---------------------------------------------------------


def _status(app_state: str, deployments: dict) -> types.SimpleNamespace:
    rows = {
        name: types.SimpleNamespace(status=state, replica_states=replicas, message=message)
        for name, (state, replicas, message) in deployments.items()
    }
    app = types.SimpleNamespace(status=app_state, message="", deployments=rows)
    return types.SimpleNamespace(applications={"modelport": app})


def test_waiting_reports_progress_and_gives_up(monkeypatch):
    pytest.importorskip("ray.serve")
    from ray import serve

    from modelport.serve.ray.runner import _wait_running

    pending = _status(
        "DEPLOYING",
        {
            "ingress": ("HEALTHY", {"RUNNING": 1}, ""),
            "model-two": ("UPDATING", {"STARTING": 2}, "2 replicas not scheduled. Use ray status."),
        },
    )
    monkeypatch.setattr(serve, "status", lambda: pending)
    heard = []
    with pytest.raises(UsageError) as err:
        _wait_running("modelport", 1.0, heard.append, hint="5 CPUs requested", every_s=0.3)
    assert heard and all("waiting for Ray Serve" in h and "model-two" in h for h in heard)
    assert "ingress" not in heard[0]  # the running ones are not listed
    text = err.value.message
    assert text.startswith("gave up after 1 s waiting for Ray Serve to run application modelport")
    assert "model-two (2 starting): 2 replicas not scheduled (5 CPUs requested)" in text
    assert "--deploy-timeout" in text

    failed = _status("DEPLOY_FAILED", {})
    failed.applications["modelport"].message = "Failed to update the deployments ['model-x']"
    monkeypatch.setattr(serve, "status", lambda: failed)
    with pytest.raises(UsageError, match="DEPLOY_FAILED: Failed to update"):
        _wait_running("modelport", 30.0)


# --- a failed model, as the ingress sees it ----------------------------------------------


class _Handle:
    """A deployment handle whose ``describe`` answers what a replica would."""

    def __init__(self, doc):
        self.doc = doc

    def options(self, method_name):
        return self

    async def _answer(self):
        return self.doc

    def remote(self, *args):
        return self._answer()


@pytest.mark.anyio
async def test_a_failed_model_reads_like_the_single_process_server(tmp_path):
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.errors import ModelNotReadyError
    from modelport.serve.ray.remote import RemoteRepository, describe

    root = tmp_path / "repo"
    write(mlp_model()[0], root / "mlp" / "1", "mlp")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    async with running(root) as local:
        docs = {n: describe(local.repository, n) for n in ("broken", "mlp")}
        remote = RemoteRepository(
            {n: _Handle(d) for n, d in docs.items()}, failed={"badcfg": "cannot read config"}
        )
        await remote.refresh()
        plane = DataPlane(remote)
        plane.started = True
        # strict readiness: not ready while a model is not, for the same reasons
        assert not plane.ready() and not local.ready()
        expected = ["badcfg: cannot read config", *local.repository.not_ready()]
        assert (
            remote.not_ready()
            == expected
            == ["badcfg: cannot read config", "broken version 1 is FAILED"]
        )
        plane.strict_readiness = local.strict_readiness = False
        assert plane.ready() and local.ready()
        assert plane.model_ready("mlp") and not plane.model_ready("broken")
        assert not plane.model_ready("badcfg")
        with pytest.raises(ModelNotReadyError) as want:
            local.model_metadata("broken")
        with pytest.raises(ModelNotReadyError) as have:
            plane.model_metadata("broken")
        assert have.value.message == want.value.message
        assert "not a readable ONNX model" in have.value.message
        rows = [r for r in plane.repository_index() if r["name"] != "badcfg"]
        assert rows == local.repository_index()
        bad = [r for r in plane.repository_index() if r["name"] == "badcfg"]
        assert bad == [
            {
                "name": "badcfg",
                "version": "",
                "state": "UNAVAILABLE",
                "reason": "cannot read config",
            }
        ]
        assert plane.model_metadata("mlp") == local.model_metadata("mlp")
        # what the replica describes is all the data plane reads (engine, limits, batching)
        assert plane.model_config("mlp") == local.model_config("mlp")
        have, want = remote.get("mlp").model, local.repository.get("mlp").model
        assert (have.row_limit, have.element_limits) == (want.row_limit, want.element_limits)


class _Replica:
    """A model deployment's handle: ``describe`` and ``infer`` run the replica's own code over a
    local repository, the arguments and answers pickled as Ray would."""

    def __init__(self, repository, name):
        self.repository, self.name, self.method = repository, name, None

    def options(self, method_name):
        clone = _Replica(self.repository, self.name)
        clone.method = method_name
        return clone

    def remote(self, *args):
        import pickle

        from modelport.serve.ray.remote import describe, replica_infer

        async def call():
            if self.method == "describe":
                return pickle.loads(pickle.dumps(describe(self.repository, self.name)))
            version, feed = pickle.loads(pickle.dumps(args))
            return pickle.loads(
                pickle.dumps(await replica_infer(self.repository, self.name, version, feed))
            )

        return call()


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_model_with_text_processing_is_prepared_by_its_replica(minilm_package, monkeypatch):
    """Text in, embedding out: the ingress forwards the request's tensors, the replica runs the
    model's pre-processing, batching and post-processing; answers equal the single process's."""
    from modelport.errors import InputError
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.ray import remote as remote_module
    from modelport.serve.types import InferenceRequest, Tensor

    async def no_ray(handle, version, feed, attempts=2):
        served, payload = await handle.remote(version, feed)
        return (int(served), payload) if served is not None else (None, payload)

    monkeypatch.setattr(remote_module, "remote_infer", no_ray)
    name = minilm_package.path.name
    texts = np.array(["a short one", "a somewhat longer sentence about serving"], dtype=object)
    request = InferenceRequest(name, [Tensor("text", "BYTES", [2], texts)])
    async with running(minilm_package.path) as local:
        remote = remote_module.RemoteRepository({name: _Replica(local.repository, name)})
        await remote.refresh()
        plane = DataPlane(remote)
        plane.started = True
        assert plane.model_metadata(name) == local.model_metadata(name)
        want = await local.infer(request)
        have = await plane.infer(request)
        assert have.model_version == want.model_version
        assert [t.name for t in have.outputs] == ["embedding"]
        np.testing.assert_allclose(have.outputs[0].data, want.outputs[0].data, rtol=1e-5, atol=1e-6)
        bad = InferenceRequest(name, [Tensor("txt", "BYTES", [1], texts[:1])])
        with pytest.raises(InputError, match="has no input named 'txt'"):
            await plane.infer(bad)  # checked by the replica's pre-processing, as in one process


@pytest.mark.anyio
async def test_labels_and_the_raw_graph_through_the_ingress(tmp_path, monkeypatch):
    """Under --ray, NAME_raw reaches the replica's bare graph and classification answers carry
    the package's labels, exactly as in the single-process server."""
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.errors import ModelNotFoundError
    from modelport.serve.ray import remote as remote_module
    from modelport.serve.types import InferenceRequest, RequestedOutput, Tensor

    async def no_ray(handle, version, feed, attempts=2):
        served, payload = await handle.remote(version, feed)
        return (int(served), payload) if served is not None else (None, payload)

    monkeypatch.setattr(remote_module, "remote_infer", no_ray)
    x = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2], [3, 0, -2, 1]], dtype=np.float32)
    root = tmp_path / "repo"
    write(mlp_model()[0], root / "mlp" / "1", "mlp")
    labelled_mlp(root / "animals" / "1")
    async with running(root) as local:
        remote = remote_module.RemoteRepository(
            {n: _Replica(local.repository, n) for n in ("mlp", "animals")}
        )
        await remote.refresh()
        plane = DataPlane(remote)
        plane.started = True
        requests = [
            InferenceRequest("animals", [Tensor("x", "FP32", [3, 4], x)]),
            InferenceRequest("animals_raw", [Tensor("x", "FP32", [3, 4], x)]),
            InferenceRequest(
                "animals_raw",
                [Tensor("x", "FP32", [3, 4], x)],
                outputs=[RequestedOutput("y", {"classification": 2})],
            ),
        ]
        for request in requests:
            want, have = await local.infer(request), await plane.infer(request)
            assert [t.name for t in have.outputs] == [t.name for t in want.outputs]
            for h, w in zip(have.outputs, want.outputs, strict=True):
                assert h.datatype == w.datatype
                if h.datatype == "BYTES":
                    assert h.data.tolist() == w.data.tolist()
                else:
                    np.testing.assert_allclose(h.data, w.data, rtol=1e-6)
        # the classification answer names the classes: "score:index:label"
        assert all(len(s.split(b":")) == 3 for s in have.outputs[0].data.ravel())
        assert {s.split(b":")[2] for s in have.outputs[0].data.ravel()} <= {b"cat", b"dog", b"bird"}
        assert plane.model_metadata("animals_raw") == local.model_metadata("animals_raw")
        assert plane.model_ready("animals_raw") == local.model_ready("animals_raw")
        with pytest.raises(ModelNotFoundError, match="'mlp' has no processing"):
            await plane.infer(InferenceRequest("mlp_raw", [Tensor("x", "FP32", [3, 4], x)]))
