"""The data plane's contracts (serve/contracts.py): both repositories keep them.

mypy checks the types (``make lint``: serve/repository.py and serve/ray/remote.py assign their
repository class to ``type[Repository]``); these tests check that every member a Protocol names
is there at run time, on real objects of both implementations, and what ``serving`` answers for a
version drained under a request.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import numpy as np
import pytest

from modelport.serve import contracts
from modelport.serve.contracts import (
    ModelQueue,
    ModelStatus,
    Repository,
    ServedModel,
    ServedVersion,
    VersionStatus,
    serving,
)
from modelport.serve.errors import ModelNotReadyError
from modelport.serve.repository import VersionState
from modelport.serve.types import InferenceRequest, Tensor

from .conftest import running
from .models import mlp_model, write

pytestmark = pytest.mark.anyio


def members(protocol: type) -> set[str]:
    """The public members a Protocol declares (its own and its bases')."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls in (Protocol, object) or not getattr(cls, "_is_protocol", False):
            continue
        names |= {n for n in vars(cls) if not n.startswith("_")}
        names |= {n for n in getattr(cls, "__annotations__", {}) if not n.startswith("_")}
    return names


def missing(obj: object, protocol: type) -> list[str]:
    return sorted(n for n in members(protocol) if not hasattr(obj, n))


def test_the_protocols_name_what_the_data_plane_reads():
    assert {"get", "entry", "models", "metrics", "not_ready", "index", "load", "unload"} <= members(
        Repository
    )
    assert {"version", "version_str", "state", "reason", "model", "batcher"} == members(
        ServedVersion
    )
    assert {"input_specs", "output_types", "row_limit", "element_limits", "prepare"} <= members(
        ServedModel
    )
    assert members(ModelQueue) == {"max_batch_size", "instances", "inline", "submit"}
    assert set(contracts.__all__) <= set(dir(contracts))


class _Handle:
    """A model deployment handle: ``describe`` answers what the replica would; ``infer`` runs
    the feed on the local repository (what a replica does with a forwarded request)."""

    def __init__(self, local, name):
        self.local, self.name, self.method = local, name, None

    def options(self, method_name):
        other = _Handle(self.local, self.name)
        other.method = method_name
        return other

    def remote(self, *args):
        from modelport.serve.ray.remote import describe, replica_infer

        if self.method == "describe":

            async def doc():
                return describe(self.local, self.name)

            return doc()
        return replica_infer(self.local, self.name, *args)


async def test_both_repositories_have_every_member_of_the_contracts(tmp_path):
    from modelport.serve.ray.remote import RemoteRepository

    root = tmp_path / "repo"
    write(mlp_model()[0], root / "mlp" / "1", "mlp")
    async with running(root) as plane:
        local = plane.repository
        remote = RemoteRepository({"mlp": _Handle(local, "mlp")})
        await remote.refresh()
        for repository in (local, remote):
            assert missing(repository, Repository) == []
            entry = repository.entry("mlp")
            assert missing(entry, ModelStatus) == []
            assert missing(entry.versions[1], VersionStatus) == []
            version = repository.get("mlp")
            assert missing(version, ServedVersion) == []
            model, queue = serving(version)
            assert missing(model, ServedModel) == [], type(model).__name__
            assert missing(queue, ModelQueue) == [], type(queue).__name__
            assert model.prepare is None and model.input_specs == {"x": ("FP32", (-1, 4))}
            out = await queue.submit({"x": np.ones((2, 4), np.float32)})
            assert out["y"].shape == (2, 3)


async def test_a_version_drained_under_a_request_answers_503(tmp_path):
    root = tmp_path / "repo"
    write(mlp_model()[0], root / "mlp" / "1", "mlp")
    async with running(root) as plane:
        drained = VersionState(1, "UNLOADING")  # what _drain leaves: no model, no batcher
        with pytest.raises(ModelNotReadyError, match="unloaded while the request was under way"):
            serving(drained)
        plane.repository.get = lambda name, version=None: drained
        request = InferenceRequest(
            "mlp", [Tensor("x", "FP32", [1, 4], np.ones((1, 4), np.float32))]
        )
        with pytest.raises(ModelNotReadyError):
            await asyncio.wait_for(plane.infer(request), 5)
        assert plane.metrics.requests[("mlp", "1", "unavailable")] == 1
