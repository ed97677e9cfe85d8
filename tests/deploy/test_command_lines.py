"""The Docker image and the KServe manifest agree on the entrypoint and the ports: their command
lines are composed the way Docker and Kubernetes compose them (KServe's ``args`` replace the
image's CMD), parsed with modelport's own CLI, and run here without Docker."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from modelport.deploy import package_for
from tests.serve_process import free_port, http_ready, serve_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, digits_package):
    base = tmp_path_factory.mktemp("artifacts")
    docker = package_for(digits_package, "docker", base / "ctx").path
    kserve = package_for(digits_package, "kserve", base / "ks").path
    return docker, kserve


def _instruction(text: str, name: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return line[len(name) + 1 :]


def _command_lines(docker: Path, kserve: Path):
    text = (docker / "Dockerfile").read_text()
    entrypoint = json.loads(_instruction(text, "ENTRYPOINT"))
    cmd = json.loads(_instruction(text, "CMD"))
    doc = yaml.safe_load((kserve / "inferenceservice.yaml").read_text())
    container = doc["spec"]["predictor"]["containers"][0]
    assert "command" not in container  # the image's ENTRYPOINT is kept
    return text, entrypoint + cmd, entrypoint + container["args"], container


def _parse(argv: list[str]):
    from modelport.cli.serve_cmd import serve

    assert argv[:2] == ["modelport", "serve"]
    ctx = serve.make_context("serve", list(argv[2:]))
    return ctx.params


def test_entrypoint_and_ports_agree(artifacts):
    docker, kserve = artifacts
    text, docker_argv, kserve_argv, container = _command_lines(docker, kserve)
    # the repositories exist where each command line looks for them
    assert (
        docker_argv[2] == "/srv/models"
        and "COPY --chown=modelport:modelport models/ /srv/models/" in text
    )
    assert kserve_argv[2] == "/mnt/models"  # where KServe's storage initializer puts storageUri
    local = {"/srv/models": str(docker / "models"), "/mnt/models": str(kserve / "models")}
    d = _parse([local.get(a, a) for a in docker_argv])
    k = _parse([local.get(a, a) for a in kserve_argv])
    assert {**d, "repository": None} == {**k, "repository": None}  # same options, other root
    probe = container["readinessProbe"]["httpGet"]
    exposed = [int(p) for p in _instruction(text, "EXPOSE").split()]
    health = int(re.search(r"127\.0\.0\.1:(\d+)/v2/health/ready", text).group(1))
    assert (
        d["http_port"]
        == container["ports"][0]["containerPort"]
        == probe["port"]
        == exposed[0]
        == health
        == 8080
    )
    assert probe["path"] == "/v2/health/ready"
    assert d["grpc_port"] == exposed[1] == 8081
    # no management API on the gRPC port (its default, 127.0.0.1:8081): it is off
    assert d["no_management"] is True
    assert d["host"] == "0.0.0.0"


def _run_locally(argv: list[str], repo_in_image: str, repo_here: Path, pkg) -> None:
    """Run the container's command line here: same arguments, with the repository path, the host
    and the ports swapped for local ones; then infer on the package's sample."""
    http, grpc = free_port(), free_port()
    swap = {repo_in_image: str(repo_here), "0.0.0.0": "127.0.0.1", "8080": str(http)}
    swap["8081"] = str(grpc)
    args = [swap.get(a, a) for a in argv[2:]]
    with serve_process(args, http_ready(http)):
        x, y = pkg.samples()
        x = np.asarray(x["x"], dtype=np.float32)
        body = {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
        req = urllib.request.Request(
            f"http://127.0.0.1:{http}/v2/models/{pkg.name}/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as r:
            assert r.status == 200
            out = json.loads(r.read())["outputs"][0]
        got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, y[out["name"]], atol=1e-4, rtol=1e-3)


def test_the_docker_command_line_serves_the_bundled_repository(artifacts, digits_package):
    docker, kserve = artifacts
    _, docker_argv, _, _ = _command_lines(docker, kserve)
    _run_locally(docker_argv, "/srv/models", docker / "models", digits_package)


def test_the_kserve_command_line_serves_the_mounted_repository(artifacts, digits_package):
    docker, kserve = artifacts
    _, _, kserve_argv, _ = _command_lines(docker, kserve)
    _run_locally(kserve_argv, "/mnt/models", kserve / "models", digits_package)
