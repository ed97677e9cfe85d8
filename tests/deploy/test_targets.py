"""modelport package: every target is written and validated, bad input refused."""

from __future__ import annotations

import json
import zipfile

import pytest
import yaml

from modelport.cli import main
from modelport.deploy import PackageTargetConfig, package_for
from modelport.deploy.targets import KSERVE_SCHEMA, triton_config
from modelport.errors import UsageError
from modelport.package import ModelPackage


@pytest.fixture(scope="module")
def pkg(tmp_path_factory, digits_package):
    return digits_package


def test_repo_target_next_version(tmp_path, pkg):
    r1 = package_for(pkg, "repo", tmp_path / "repo")
    r2 = package_for(pkg, "repo", tmp_path / "repo")
    assert r1.path == tmp_path / "repo" / "digits-cnn" / "1"
    assert r2.path == tmp_path / "repo" / "digits-cnn" / "2"
    assert ModelPackage.load(r2.path).signature == pkg.signature
    with pytest.raises(UsageError, match="already exists"):
        package_for(pkg, "repo", tmp_path / "repo", PackageTargetConfig(version=1))


def test_triton_config_parses_with_batching(tmp_path, pkg):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    r = package_for(
        pkg,
        "triton",
        tmp_path / "triton",
        PackageTargetConfig(max_batch_size=16, max_queue_delay_ms=1.5),
    )
    cfg = text_format.Parse((r.path / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 16
    assert cfg.input[0].name == "x" and list(cfg.input[0].dims) == [1, 8, 8]  # batch axis implied
    assert cfg.input[0].data_type == model_config_pb2.TYPE_FP32
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1500
    assert (r.path / "1" / "model.onnx").is_file()


def test_triton_config_without_batch_axis(tiny_onnx, tmp_path):
    import onnx

    m = onnx.load(tiny_onnx)
    for vi in [*m.graph.input, *m.graph.output]:
        vi.type.tensor_type.shape.dim[0].dim_value = 2
    onnx.save(m, tmp_path / "fixed.onnx")
    p = ModelPackage.load(tmp_path / "fixed.onnx")
    from modelport.deploy.targets import _serving

    text = triton_config(p, "fixed", _serving(p, PackageTargetConfig()))
    assert (
        "max_batch_size: 0" in text and "dims: [ 2, 4 ]" in text and "dynamic_batching" not in text
    )


def test_torchserve_mar_handler_runs(tmp_path, pkg):
    r = package_for(pkg, "torchserve", tmp_path / "store")
    assert r.path.name == "digits-cnn.mar"
    with zipfile.ZipFile(r.path) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
    assert {"handler.py", "model.onnx", "modelport.json"} <= names
    assert manifest["model"]["modelName"] == "digits-cnn"
    assert any("handler ran on a sample: outputs match" in c for c in r.checks)


def test_kserve_manifest_validates(tmp_path, pkg):
    import jsonschema

    r = package_for(
        pkg, "kserve", tmp_path / "ks", PackageTargetConfig(storage_uri="s3://bucket/models")
    )
    doc = yaml.safe_load((r.path / "inferenceservice.yaml").read_text())
    jsonschema.validate(doc, KSERVE_SCHEMA)
    container = doc["spec"]["predictor"]["containers"][0]
    assert container["args"][:2] == ["serve", "/mnt/models"]
    assert {"name": "STORAGE_URI", "value": "s3://bucket/models"} in container["env"]
    assert (r.path / "models" / "digits-cnn" / "1" / "model.onnx").is_file()
    bad = dict(doc, metadata={"name": "Not_Valid"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, KSERVE_SCHEMA)


def test_docker_context_lints(tmp_path, pkg):
    r = package_for(pkg, "docker", tmp_path / "ctx")
    text = (r.path / "Dockerfile").read_text()
    assert "USER modelport" in text and "HEALTHCHECK" in text
    assert (r.path / "entrypoint.sh").stat().st_mode & 0o111
    assert (r.path / "models" / "digits-cnn" / "1" / "modelport.json").is_file()
    assert any("passes" in c for c in r.checks)


def test_bad_name_and_target(tmp_path, pkg):
    with pytest.raises(UsageError, match="not valid"):
        package_for(pkg, "repo", tmp_path / "r", PackageTargetConfig(name="../escape"))
    with pytest.raises(UsageError, match="unknown target"):
        package_for(pkg, "lambda", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_cli(tmp_path, pkg, capsys):
    rc = main(
        [
            "package",
            str(pkg.path),
            "--target",
            "triton",
            "-o",
            str(tmp_path / "t"),
            "--json",
            str(tmp_path / "t.json"),
        ]
    )
    assert rc == 0
    assert "config.pbtxt parses" in capsys.readouterr().out
    assert json.loads((tmp_path / "t.json").read_text())["target"] == "triton"
    assert main(["package", str(pkg.path), "--target", "nope", "-o", str(tmp_path / "x")]) == 2
