"""``modelport serve REPO/<model>``: one model's folder (numbered versions, like TF Serving's
model base path) is served as that one model, named after the folder, with its versions and its
config.json (it was refused: "holds packages (1), not model folders")."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from modelport.cli.serve_cmd import refuse_empty_repository
from modelport.errors import UsageError
from modelport.serve.repository import ModelRepository, is_model_folder
from tests.serve.compat_server import running_server, server_config
from tests.serve.models import mlp_model, write

X = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2]], dtype=np.float32)
V1, V2 = mlp_model(scale=1.0)[1], mlp_model(scale=2.0)[1]


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "models"
    write(mlp_model(scale=1.0)[0], root / "mlp" / "1", "mlp")
    write(mlp_model(scale=2.0)[0], root / "mlp" / "2", "mlp")
    return root


def test_a_model_folder_is_one_model_with_its_versions(repo):
    folder = repo / "mlp"
    assert is_model_folder(folder)
    assert not is_model_folder(repo)  # a repository of models
    assert not is_model_folder(folder / "1")  # one package
    r = ModelRepository(folder)
    assert r.model_folder and not r.single
    assert r.on_disk() == {"mlp": folder}
    assert sorted(r.versions_on_disk(folder)) == [1, 2]
    refuse_empty_repository(str(folder))  # no longer "holds packages (1), not model folders"
    assert ModelRepository(repo).on_disk() == {"mlp": folder}  # the repository: unchanged


def test_a_real_server_serves_the_folder_like_the_repository(repo):
    (repo / "mlp" / "config.json").write_text(json.dumps({"version_policy": "all"}))
    x = {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}
    calls = [
        ("GET", "/v2/models/mlp", None),
        ("POST", "/v2/models/mlp/infer", {"inputs": [x]}),
        ("POST", "/v2/models/mlp/versions/1/infer", {"inputs": [x]}),
        ("GET", "/v1/models/mlp", None),
        ("POST", "/v1/models/mlp/versions/1:predict", {"instances": X.tolist()}),
        ("POST", "/v2/repository/index", None),
    ]

    def answers(base: str) -> list[tuple[int, bytes]]:
        with httpx.Client(base_url=base, timeout=30, headers={"x-request-id": "r1"}) as client:
            return [
                (r.status_code, r.content)
                for r in (client.request(m, p, json=b) for m, p, b in calls)
            ]

    with running_server(server_config(repo / "mlp")) as folder:
        got = answers(f"http://127.0.0.1:{folder['http_port']}")
    with running_server(server_config(repo)) as whole:
        want = answers(f"http://127.0.0.1:{whole['http_port']}")
    assert got == want  # config.json (version policy "all") applied: both versions served
    assert [s for s, _ in got] == [200] * len(calls)
    assert json.loads(got[0][1])["versions"] == ["1", "2"]
    y2 = json.loads(got[1][1])["outputs"][0]
    y1 = json.loads(got[2][1])["outputs"][0]
    np.testing.assert_allclose(np.reshape(y2["data"], (2, 3)), V2(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.reshape(y1["data"], (2, 3)), V1(X), rtol=1e-5, atol=1e-5)


def test_a_folder_of_packages_without_versions_is_still_refused(tmp_path):
    """Packages side by side (not numbered) are not one model's versions: exit 2, as before."""
    root = tmp_path / "out"
    write(mlp_model()[0], root / "mlp", "mlp")
    assert not is_model_folder(root)
    with pytest.raises(UsageError, match="holds packages \\(mlp\\), not model folders"):
        refuse_empty_repository(str(root))


@pytest.mark.anyio
async def test_the_management_api_does_not_register_into_a_model_folder(repo):
    from modelport.serve.config import ManagementConfig
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.management import Management

    r = ModelRepository(repo / "mlp")
    service = Management(DataPlane(r, r.metrics), ManagementConfig(port=0))
    with pytest.raises(UsageError, match="serves one model folder"):
        service._root()


@pytest.mark.anyio
async def test_under_ray_the_folder_packs_as_that_model(repo):
    """What ``serve --ray`` ships to a replica (no cluster needed): the folder's versions and
    config.json as ``<model>/<version>/``, which the replica's repository loads as that model."""
    import shutil

    from modelport.serve.ray.packages import pack_model, unpack

    (repo / "mlp" / "config.json").write_text(json.dumps({"version_policy": "all"}))
    root = unpack(pack_model(ModelRepository(repo / "mlp"), "mlp"), "mlp")
    try:
        assert sorted(p.name for p in (root / "mlp").iterdir()) == ["1", "2", "config.json"]
        replica = ModelRepository(root)
        await replica.sync()
        try:
            assert sorted(replica.models["mlp"].versions) == [1, 2]
        finally:
            await replica.close()
    finally:
        shutil.rmtree(root)
