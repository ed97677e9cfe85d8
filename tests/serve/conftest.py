"""Fixtures for the serving tests: a repository of tiny models and an in-process data plane."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from .models import make_repo


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def repo_template(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("serve") / "repo")


@pytest.fixture
def repo(tmp_path, repo_template) -> Path:
    """A fresh copy of the test repository (tests may change it)."""
    out = tmp_path / "repo"
    shutil.copytree(repo_template, out)
    return out


@contextlib.asynccontextmanager
async def running(path: Path, **model_defaults):
    """A loaded repository and its data plane, closed afterwards."""
    from modelport.serve.config import ModelConfig
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.repository import ModelRepository

    repository = ModelRepository(path, ModelConfig(**model_defaults))
    plane = DataPlane(repository)
    await repository.sync()
    plane.started = True
    try:
        yield plane
    finally:
        await repository.close()
