"""``modelport serve``: a KServe V2 / Open Inference Protocol server over HTTP and gRPC.

    types.py        InferenceRequest / InferenceResponse, the one language between layers
    dataplane.py    health, metadata, inference: what every protocol adapter calls
    repository.py   REPO/<model>/<version>/ on disk, loading, hot reload, version policy
    batcher.py      dynamic batching per model
    model.py        a loaded model version (the only module here that touches onnxruntime)
    http/, grpc/    protocol adapters; errors.py maps errors to HTTP/gRPC statuses
    server.py       runs HTTP + gRPC + the poller in one event loop, graceful SIGTERM

Importing this package imports nothing heavy; ``serve`` and ``ServerConfig`` are loaded on use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelConfig", "ServerConfig", "VersionPolicy", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("ModelConfig", "ServerConfig", "VersionPolicy"):
        from . import config

        return getattr(config, name)
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(name)
