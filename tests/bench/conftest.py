"""Fixtures: the small V2 servers of v2_servers.py, one of each per test module."""

from __future__ import annotations

import pytest

from .v2_servers import running_grpc_server, running_http_server


@pytest.fixture(scope="module")
def http_server():
    with running_http_server() as s:
        yield s


@pytest.fixture(scope="module")
def grpc_server():
    with running_grpc_server() as s:
        yield s
