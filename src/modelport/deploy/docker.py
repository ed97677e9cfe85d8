"""The ``docker`` target: a build context (Dockerfile from ``templates/Dockerfile``, the modelport
wheel, the model repository) whose image runs ``modelport serve``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

from ..errors import UsageError, VerificationError
from ..package import ModelPackage, atomic_output_dir
from .base import (
    GRPC_PORT,
    HTTP_PORT,
    SERVE_ENTRYPOINT,
    PackageTargetConfig,
    TargetResult,
    copy_package,
    default_image,
    model_name,
    serve_args,
    serving_settings,
)

__all__ = [
    "build_wheel",
    "check_context",
    "dockerfile_sources",
    "dockerfile_template",
    "lint_dockerfile",
    "target_docker",
]


def dockerfile_template() -> str:
    """``templates/Dockerfile``, with ``{wheel}``, ``{http_port}``, ``{grpc_port}``,
    ``{entrypoint}`` and ``{cmd}`` to fill in (``str.format``)."""
    return files("modelport.deploy.templates").joinpath("Dockerfile").read_text(encoding="utf-8")


def _source_root() -> Path | None:
    """The source checkout modelport runs from (pyproject.toml naming modelport), if any."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(
        r'^name\s*=\s*"modelport"', pyproject.read_text(), flags=re.M
    ):
        return root
    return None


def build_wheel(dest: Path, wheel: str | None = None) -> Path:
    """Put the modelport wheel into ``dest``: the given ``wheel`` file, else one built with
    ``pip wheel <source> --no-deps`` from the source checkout this modelport runs from."""
    import tempfile

    dest.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        w = Path(wheel)
        if not (w.is_file() and w.name.startswith("modelport-") and w.suffix == ".whl"):
            raise UsageError(f"--wheel {wheel}: give a modelport-*.whl file")
        shutil.copy2(w, dest / w.name)
        return dest / w.name
    root = _source_root()
    if root is None:
        raise UsageError(
            "the docker target puts a modelport wheel into the build context, and this modelport "
            "is not a source checkout to build one from: give --wheel PATH (build it with "
            "`pip wheel <modelport source> -w DIR --no-deps`)"
        )
    with tempfile.TemporaryDirectory(prefix="modelport-wheel-") as tmpd:
        src = Path(tmpd) / "src-tree"
        src.mkdir()
        for f in ("pyproject.toml", "README.md"):
            shutil.copy2(root / f, src / f)
        shutil.copytree(
            root / "src",
            src / "src",
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
        )
        built = Path(tmpd) / "wheels"
        cmd = [sys.executable, "-m", "pip", "wheel", str(src), "-w", str(built), "--no-deps", "-q"]
        try:
            import setuptools  # noqa: F401

            cmd.append("--no-build-isolation")  # build offline with the setuptools we have
        except ImportError:
            pass
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(built.glob("modelport-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise VerificationError(
                f"pip wheel of {root} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        shutil.copy2(wheels[0], dest / wheels[0].name)
    return dest / wheels[0].name


def target_docker(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT is a Docker build context: Dockerfile, wheels/modelport-*.whl and models/<name>/<v>/."""
    name = model_name(pkg, config)
    serving = serving_settings(pkg, config)
    with atomic_output_dir(out) as tmp:
        wheel = build_wheel(tmp / "wheels", config.wheel)
        (tmp / "Dockerfile").write_text(
            dockerfile_template().format(
                wheel=wheel.name,
                http_port=HTTP_PORT,
                grpc_port=GRPC_PORT,
                entrypoint=json.dumps(list(SERVE_ENTRYPOINT)),
                cmd=json.dumps(serve_args("/srv/models", serving)),
            )
        )
        (tmp / ".dockerignore").write_text("**/__pycache__\n")
        copy_package(pkg, tmp / "models" / name / str(config.version or 1))
    checks = [lint_dockerfile(out / "Dockerfile"), check_context(out)]
    image = default_image(pkg, config)
    return TargetResult(
        "docker",
        out,
        ["Dockerfile", f"wheels/{wheel.name}", f"models/{name}/{config.version or 1}/"],
        checks,
        [f"build: docker build -t {image} {out}"],
    )


def dockerfile_sources(path: Path) -> list[str]:
    """The build-context paths the Dockerfile's COPY lines read (flags such as --chown dropped)."""
    sources = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0].upper() in ("COPY", "ADD"):
            args = [a for a in parts[1:] if not a.startswith("--")]
            sources.extend(args[:-1])
    return sources


def check_context(ctx: Path) -> str:
    """Every COPY source exists in the context, and the wheel pip installs is the one copied."""
    missing = [s for s in dockerfile_sources(ctx / "Dockerfile") if not (ctx / s).exists()]
    if missing:
        raise VerificationError(f"{ctx}/Dockerfile copies {missing}, not in the build context")
    text = (ctx / "Dockerfile").read_text()
    installs = re.findall(r'pip install [^\n]*?"?/tmp/wheels/([^"\[\s]+)', text)
    if not installs or any(not (ctx / "wheels" / w).is_file() for w in installs):
        raise VerificationError(f"{ctx}/Dockerfile installs {installs}, not wheels in the context")
    return f"every COPY source is in the build context; pip installs wheels/{installs[0]}"


def lint_dockerfile(path: Path) -> str:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    text = path.read_text()
    problems = []
    if not text.lstrip("# \n").startswith("FROM") and "\nFROM " not in text:
        problems.append("no FROM")
    if "\nUSER " not in text:
        problems.append("runs as root (no USER)")
    if ":latest" in text.split("\n", 2)[1]:
        problems.append("FROM uses :latest")
    if problems:
        raise VerificationError(f"{path}: " + "; ".join(problems))
    if Path(hadolint).exists():
        proc = subprocess.run(
            [hadolint, "--failure-threshold", "warning", str(path)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise VerificationError(
                f"hadolint found problems in {path}:\n{proc.stdout}{proc.stderr}"
            )
        return "Dockerfile passes hadolint (warning threshold) and our checks (FROM pinned, non-root USER)"
    return "Dockerfile passes our checks (FROM pinned, non-root USER); hadolint not installed"
