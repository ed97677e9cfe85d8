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


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"warmup": "no"}, "warmup must be true or false"),
        ({"instances": 1.5}, "instances must be an integer"),
        ({"instances": 100_000}, "instances must be between 1 and 256"),
        ({"timeout_ms": float("nan")}, "timeout_ms must be a finite number"),
        ({"timeout_ms": float("inf")}, "timeout_ms must be a finite number"),
        ({"max_queue_delay_ms": -1}, "max_queue_delay_ms must be between"),
        ({"max_batch_size": True}, "max_batch_size must be an integer"),
        ({"max_queue_size": "512"}, "max_queue_size must be an integer"),
        ({"version_policy": {"latest": {"num_versions": "2"}}}, "must be integers"),
        ({"version_policy": {"specific": {"versions": [1.5]}}}, "must be integers"),
    ],
)
def test_settings_are_typed_and_range_checked(settings, words):
    with pytest.raises(UsageError, match=words) as info:
        ModelConfig().merged(settings, source="REPO/m/config.json")
    assert "REPO/m/config.json" in info.value.message


@pytest.mark.parametrize("field", ["poll_s", "shutdown_grace_s"])
def test_server_settings_refuse_nan(tmp_path, field):
    with pytest.raises(UsageError, match=f"{field} must be a finite number"):
        ServerConfig(repository=tmp_path, **{field: float("nan")})


def test_a_bad_config_file_fails_that_model_only(repo):
    import asyncio
    import json

    from modelport.serve.repository import ModelRepository

    (repo / "ints" / "config.json").write_text(json.dumps({"warmup": "no"}))
    (repo / "flags" / "config.json").write_text('{"instances": 1.5}')

    async def main():
        r = ModelRepository(repo)
        await r.sync()
        try:
            index = {(row["name"], row["state"]): row["reason"] for row in r.index()}
            return index, r.get("mlp").state
        finally:
            await r.close()

    index, mlp_state = asyncio.run(main())
    assert mlp_state == "READY"
    assert "warmup must be true or false" in index[("ints", "UNAVAILABLE")]
    assert "instances must be an integer" in index[("flags", "UNAVAILABLE")]


@pytest.mark.parametrize(
    "args",
    [["--timeout-ms", "nan"], ["--max-request-mb", "nan"], ["--shutdown-grace", "inf"],
     ["--instances", "100000"], ["--max-queue-delay-ms", "-3"]],
)  # fmt: skip
def test_the_command_line_refuses_bad_numbers_with_exit_2(tmp_path, args, capsys):
    from modelport.cli import main

    base = ["serve", str(tmp_path), "--http-port", "0", "--no-grpc", "--no-management"]
    assert main([*base, *args]) == 2
    assert "Traceback" not in capsys.readouterr().err
