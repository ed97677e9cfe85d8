import pytest

from modelport.errors import UsageError
from modelport.serve.config import ModelConfig, ServerConfig, VersionPolicy


@pytest.mark.parametrize(
    ("value", "available", "expected"),
    [
        ("latest", [1, 3, 2], [3]),
        ("latest:2", [1, 3, 2], [3, 2]),
        ("all", [1, 3, 2], [3, 2, 1]),
        ("specific:1,3", [1, 2, 3], [3, 1]),
        ({"latest": {"num_versions": 2}}, [5, 7, 6], [7, 6]),
        ({"specific": {"versions": [2]}}, [1, 2], [2]),
        ({"all": {}}, [4, 1], [4, 1]),
    ],
)
def test_version_policy_selects(value, available, expected):
    assert VersionPolicy.parse(value).select(available) == expected


@pytest.mark.parametrize("bad", ["newest", "latest:x", "latest:0", "specific:", 3])
def test_version_policy_rejects(bad):
    with pytest.raises(UsageError):
        VersionPolicy.parse(bad)


def test_model_config_validates_and_names_the_fields():
    with pytest.raises(UsageError, match="max_batch_size.*instances"):
        ModelConfig(max_batch_size=0, instances=0)
    with pytest.raises(UsageError, match="execution"):
        ModelConfig(execution="gpu")


def test_model_config_merge_rejects_unknown_keys_and_keeps_the_original():
    base = ModelConfig()
    merged = base.merged({"max_batch_size": 8, "version_policy": "all"})
    assert merged.max_batch_size == 8 and merged.version_policy.kind == "all"
    assert base.max_batch_size == 32
    with pytest.raises(UsageError, match="max_batchsize.*config.json"):
        base.merged({"max_batchsize": 8}, source="config.json")
    with pytest.raises(UsageError):
        base.merged({"max_batch_size": "eight"})


def test_threads_never_oversubscribe():
    from modelport.serve.config import available_cores

    cores = available_cores()
    assert ModelConfig(instances=1).threads == cores
    assert ModelConfig(instances=cores * 2).threads == 1
    assert ModelConfig(intra_op_threads=3).threads == 3


def test_server_config_checks(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        ServerConfig(repository=tmp_path / "nope")
    with pytest.raises(UsageError, match="pick different ports"):
        ServerConfig(repository=tmp_path, http_port=9000, grpc_port=9000)
    assert ServerConfig(repository=tmp_path, http_port=0, grpc_port=0).http_port == 0
