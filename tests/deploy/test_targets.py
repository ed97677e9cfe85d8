"""modelport package: every target is written and validated, bad input refused."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import yaml

from modelport.cli import main
from modelport.deploy import PackageTargetConfig, package_for
from modelport.deploy.kserve import kserve_schema
from modelport.deploy.triton import triton_config
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
    from modelport.deploy.base import serving_settings

    text = triton_config(p, "fixed", serving_settings(p, PackageTargetConfig()))
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
    # the digits package stores 16 test images and the source's outputs on them
    (check,) = r.checks
    assert "handler ran on the package's stored sample inputs (x [16, 1, 8, 8] float32)" in check
    assert "outputs match the stored sample outputs (output; atol/rtol 1e-3)" in check


def test_torchserve_check_says_when_it_ran_on_generated_inputs(tmp_path, tiny_onnx, capsys):
    # a bare model stores no samples: the check runs on generated inputs and says so, and that
    # nothing was compared (it used to say "ran on a sample: outputs match")
    out = tmp_path / "store"
    assert main(["package", str(tiny_onnx), "--target", "torchserve", "-o", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "its handler ran on generated inputs (x [2, 4] float32): it answered y" in text
    assert "the package stores no samples: values not compared" in text
    assert "a sample" not in text and "outputs match" not in text


def test_torchserve_check_with_stored_inputs_but_no_outputs(tmp_path, pkg):
    copy = tmp_path / "digits"
    shutil.copytree(pkg.path, copy)
    (copy / "samples" / "outputs.npz").unlink()
    r = package_for(ModelPackage.load(copy), "torchserve", tmp_path / "store")
    (check,) = r.checks
    assert "ran on the package's stored sample inputs (x [16, 1, 8, 8] float32)" in check
    assert "it answered output (the package stores no sample outputs: values not compared)" in check
    assert "outputs match" not in check


def test_kserve_manifest_validates_against_the_real_crd(tmp_path, pkg):
    import jsonschema

    r = package_for(
        pkg, "kserve", tmp_path / "ks", PackageTargetConfig(storage_uri="s3://bucket/models")
    )
    assert any("KServe v0.20.0's InferenceService v1beta1 CRD" in c for c in r.checks)
    doc = yaml.safe_load((r.path / "inferenceservice.yaml").read_text())
    schema = kserve_schema()
    jsonschema.Draft7Validator(schema).validate(doc)
    # the vendored schema is KServe's: it knows the predictor's real fields...
    predictor = schema["properties"]["spec"]["properties"]["predictor"]["properties"]
    assert {"containers", "minReplicas", "sklearn", "triton", "workerSpec"} <= set(predictor)
    container = doc["spec"]["predictor"]["containers"][0]
    assert container["args"][0] == "/mnt/models"  # args replace the image's CMD
    assert {"name": "STORAGE_URI", "value": "s3://bucket/models"} in container["env"]
    assert container["image"] == "modelport-digits-cnn:1"
    assert (r.path / "models" / "digits-cnn" / "1" / "model.onnx").is_file()
    # ...and it can fail: a wrong name, a misspelt field, a wrong type
    bad_docs = [
        dict(doc, metadata={"name": "Not_Valid"}),
        {**doc, "spec": {"predictor": {**doc["spec"]["predictor"], "minReplica": 1}}},
        {**doc, "spec": {"predictor": {**doc["spec"]["predictor"], "minReplicas": "one"}}},
        {
            **doc,
            "spec": {
                "predictor": {
                    **doc["spec"]["predictor"],
                    "containers": [{**container, "ports": [{"containerPort": "8080"}]}],
                }
            },
        },
    ]
    for bad in bad_docs:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(schema).validate(bad)


def test_kserve_annotates_the_source_sha256(tmp_path, pkg):
    def annotation(sha: str | None, out: str) -> str:
        copy = tmp_path / f"{out}-pkg"
        shutil.copytree(pkg.path, copy)
        manifest = json.loads((copy / "modelport.json").read_text())
        manifest.setdefault("provenance", {})["source_sha256"] = sha
        (copy / "modelport.json").write_text(json.dumps(manifest, indent=2))
        r = package_for(ModelPackage.load(copy), "kserve", tmp_path / out)
        doc = yaml.safe_load((r.path / "inferenceservice.yaml").read_text())
        return doc["metadata"]["annotations"]["modelport/source-sha256"]

    assert annotation("ab" * 32, "ks") == "ab" * 32
    # a source without a hash (an HF folder without weight files writes null) annotates "", not "None"
    assert annotation(None, "ks2") == ""


def test_kserve_check_refuses_an_invalid_manifest(tmp_path):
    from modelport.deploy.kserve import check_kserve
    from modelport.errors import VerificationError

    bad = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m"},
        "spec": {"predictor": {"containers": [{"name": "c", "image": "i", "argz": []}]}},
    }
    (tmp_path / "isvc.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(VerificationError, match="spec/predictor/containers/0.*argz"):
        check_kserve(tmp_path / "isvc.yaml")


def test_kserve_keeps_the_package_name_for_the_model(tmp_path, pkg):
    r = package_for(pkg, "kserve", tmp_path / "ks", PackageTargetConfig(name="Digits_CNN.v2"))
    doc = yaml.safe_load((r.path / "inferenceservice.yaml").read_text())
    assert doc["metadata"]["name"] == "digits-cnn-v2"  # a Kubernetes object name
    assert doc["metadata"]["annotations"]["modelport/model-name"] == "Digits_CNN.v2"
    assert (r.path / "models" / "Digits_CNN.v2" / "1" / "model.onnx").is_file()  # served name
    assert any("the served model keeps 'Digits_CNN.v2'" in n for n in r.notes)


def test_docker_context_installs_the_wheel_it_holds(tmp_path, pkg):
    from modelport.deploy.docker import dockerfile_sources

    r = package_for(pkg, "docker", tmp_path / "ctx")
    text = (r.path / "Dockerfile").read_text()
    assert "USER modelport" in text and "HEALTHCHECK" in text
    assert "modelport[serve]==" not in text  # nothing from an index that does not have it
    wheels = sorted((r.path / "wheels").glob("modelport-*.whl"))
    assert len(wheels) == 1
    # every COPY source is in the context, and pip installs exactly the copied wheel
    sources = dockerfile_sources(r.path / "Dockerfile")
    assert f"wheels/{wheels[0].name}" in sources and "models/" in sources
    assert all((r.path / s).exists() for s in sources)
    (install,) = [line for line in text.splitlines() if "pip install" in line]
    assert f'"/tmp/wheels/{wheels[0].name}[serve]"' in install
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
    assert "modelport/cli/serve_cmd.py" in names
    assert any(n.endswith(".schema.json.gz") for n in names)  # package data travels too
    assert {
        "modelport/deploy/templates/Dockerfile",
        "modelport/deploy/templates/torchserve_handler.py",
    } <= names
    assert (r.path / "models" / "digits-cnn" / "1" / "modelport.json").is_file()
    assert any("passes" in c for c in r.checks)
    assert any("every COPY source is in the build context" in c for c in r.checks)
    assert r.notes == [f"build: docker build -t modelport-digits-cnn:1 {r.path}"]


def test_docker_build_when_a_daemon_is_available(tmp_path, pkg):
    import shutil
    import subprocess

    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon on this machine: the context checks above stand in")
    r = package_for(pkg, "docker", tmp_path / "ctx")
    proc = subprocess.run(
        [docker, "build", "-t", "modelport-test-digits:1", str(r.path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


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


def test_triton_carries_the_processing_but_not_a_custom_handler(tiny_onnx, tmp_path):
    from modelport.convert import ConvertConfig, Source, convert
    from modelport.processing.config import ProcessingConfig

    cfg = ConvertConfig(processing=ProcessingConfig(labels=("a", "b", "c")))
    labelled = convert(Source.onnx(str(tiny_onnx)), tmp_path / "labelled", cfg).package
    r = package_for(labelled, "triton", tmp_path / "triton")
    assert any("is an ensemble carrying the package's processing" in n for n in r.notes), r.notes
    assert (tmp_path / "triton" / "labelled_postprocess" / "1" / "model.py").is_file()
    (tmp_path / "h.py").write_text(
        "class H:\n    def postprocess(self, outputs):\n        return outputs\n"
    )
    cfg = ConvertConfig(processing=ProcessingConfig(handler=f"{tmp_path}/h.py:H"))
    handled = convert(Source.onnx(str(tiny_onnx)), tmp_path / "handled", cfg).package
    r = package_for(handled, "triton", tmp_path / "triton2")
    assert any("custom handler is NOT carried" in n for n in r.notes), r.notes
    assert sorted(p.name for p in (tmp_path / "triton2").iterdir()) == ["handled"]
    plain = package_for(ModelPackage.load(tiny_onnx), "triton", tmp_path / "triton3")
    assert plain.notes == []
