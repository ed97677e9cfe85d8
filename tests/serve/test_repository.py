"""The repository: versions and policies, failures that stay local, hot reload, load/unload."""

import json
import shutil

import numpy as np
import pytest

from modelport.serve.errors import ModelNotFoundError, ModelNotReadyError
from modelport.serve.types import InferenceRequest, Tensor

from .conftest import running
from .models import mlp_model, write

pytestmark = pytest.mark.anyio


def x_request(model="mlp", version=None):
    x = np.ones((1, 4), np.float32)
    return InferenceRequest(model, [Tensor("x", "FP32", [1, 4], x)], version)


async def test_versions_policy_and_default(repo):
    async with running(repo) as plane:
        index = {(r["name"], r["version"]): r["state"] for r in plane.repository_index()}
        assert index[("mlp", "1")] == index[("mlp", "2")] == "READY"  # config.json: all
        y1 = (await plane.infer(x_request(version="1"))).outputs[0].data
        y2 = (await plane.infer(x_request(version="2"))).outputs[0].data
        default = await plane.infer(x_request())
        assert default.model_version == "2"
        np.testing.assert_allclose(y2, 2 * y1, rtol=1e-5)
        np.testing.assert_allclose(y1, mlp_model(scale=1.0)[1](np.ones((1, 4))), rtol=1e-5)
        with pytest.raises(ModelNotFoundError, match="no version 7"):
            await plane.infer(x_request(version="7"))
        with pytest.raises(ModelNotFoundError, match="unknown model"):
            await plane.infer(x_request(model="nope"))


async def test_latest_policy_from_the_command_line_defaults(repo):
    (repo / "mlp" / "config.json").unlink()
    async with running(repo, version_policy="latest:1") as plane:
        assert [r["version"] for r in plane.repository_index() if r["name"] == "mlp"] == ["2"]


async def test_a_broken_model_is_reported_and_others_keep_serving(repo):
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    (repo / "badcfg" / "1").mkdir(parents=True)
    shutil.copytree(repo / "ints" / "1", repo / "badcfg" / "1", dirs_exist_ok=True)
    (repo / "badcfg" / "config.json").write_text(json.dumps({"max_batchsize": 3}))
    async with running(repo) as plane:
        rows = {r["name"]: r for r in plane.repository_index()}
        assert rows["broken"]["state"] == "FAILED" and rows["broken"]["reason"]
        assert "max_batchsize" in rows["badcfg"]["reason"]
        with pytest.raises(ModelNotReadyError, match="no ready version"):
            plane.model_metadata("broken")
        assert not plane.model_ready("broken")
        # strict readiness (Triton's default): not ready while a model that should be loaded
        # is not, though the others keep serving
        assert not plane.ready()
        problems = plane.repository.not_ready()
        assert any(p.startswith("broken version 1 is FAILED") for p in problems)
        assert any(p.startswith("badcfg: unknown serving setting") for p in problems)
        assert (await plane.infer(x_request())).model_version == "2"
        plane.strict_readiness = False
        assert plane.ready()
        plane.strict_readiness = True
        await plane.unload("broken")  # explicitly unloaded models do not count
        await plane.unload("badcfg")
        assert plane.ready()


async def test_readiness_needs_a_loaded_model(tmp_path):
    (tmp_path / "empty").mkdir()
    async with running(tmp_path / "empty") as plane:
        assert plane.repository.not_ready() == ["no model is loaded"]
        assert not plane.ready()


async def test_hot_reload_new_version_changed_version_and_removal(repo):
    async with running(repo) as plane:
        repository = plane.repository
        old2 = repository.get("mlp", "2")
        write(mlp_model(scale=3.0)[0], repo / "mlp" / "3", "mlp")
        await repository.sync()
        resp = await plane.infer(x_request())
        assert resp.model_version == "3"
        y1 = (await plane.infer(x_request(version="1"))).outputs[0].data
        np.testing.assert_allclose(resp.outputs[0].data, 3 * y1, rtol=1e-5)
        assert repository.get("mlp", "2") is old2  # untouched versions are not reloaded

        # a broken copy of a serving version keeps the old one serving
        (repo / "mlp" / "3" / "model.onnx").write_bytes(b"garbage")
        await repository.sync()
        assert (await plane.infer(x_request())).model_version == "3"
        assert "failed to load" in repository.get("mlp", "3").reason

        shutil.rmtree(repo / "mlp" / "3")
        await repository.sync()
        assert (await plane.infer(x_request())).model_version == "2"
        shutil.rmtree(repo / "ints")
        await repository.sync()
        with pytest.raises(ModelNotFoundError):
            plane.model_metadata("ints")


async def test_explicit_unload_and_load(repo):
    async with running(repo) as plane:
        await plane.unload("mlp")
        with pytest.raises(ModelNotReadyError, match="unloaded"):
            await plane.infer(x_request())
        await plane.repository.sync()  # a poll does not bring it back
        assert not plane.model_ready("mlp")
        await plane.load("mlp")
        assert (await plane.infer(x_request())).model_version == "2"
        with pytest.raises(ModelNotFoundError):
            await plane.load("nope")


async def test_single_package_is_a_repository_of_one(repo):
    async with running(repo / "ints" / "1") as plane:
        assert [r["name"] for r in plane.repository_index()] == ["1"]
        md = plane.model_metadata("1")
        assert md["inputs"] == [{"name": "ids", "datatype": "INT64", "shape": [-1, 3]}]


async def test_manifest_serving_section_and_config_file(repo):
    write(mlp_model()[0], repo / "small" / "1", "small", serving={"max_batch_size": 4})
    (repo / "nobatch" / "1").parent.mkdir()
    write(mlp_model()[0], repo / "nobatch" / "1", "nobatch", serving={"max_batch_size": 4})
    (repo / "nobatch" / "config.yaml").write_text("max_batch_size: 1\ntimeout_ms: 500\n")
    async with running(repo) as plane:
        assert plane.model_config("small")["max_batch_size"] == 4
        cfg = plane.model_config("nobatch")
        assert cfg["max_batch_size"] == 0 and cfg["parameters"]["timeout_ms"] == 500
        assert plane.model_config("fixed")["max_batch_size"] == 0  # no batch axis


async def test_a_config_error_is_logged_once_per_change_not_every_poll(repo, caplog):
    """`serve --poll 1` with a config.json typo: one ERROR line, not one per poll."""
    import logging

    (repo / "mlp" / "config.json").write_text(json.dumps({"max_batchsize": 3}))
    with caplog.at_level(logging.ERROR, logger="modelport"):
        async with running(repo) as plane:
            for _ in range(3):  # three polls
                await plane.repository.sync()
            errors = [r for r in caplog.records if "max_batchsize" in r.getMessage()]
            assert len(errors) == 1
            (repo / "mlp" / "config.json").write_text(json.dumps({"max_batch_sizes": 3}))
            await plane.repository.sync()
            await plane.repository.sync()
            errors = [r for r in caplog.records if "max_batch_sizes" in r.getMessage()]
            assert len(errors) == 1  # a new mistake is logged again, once
