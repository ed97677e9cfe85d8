"""``modelport serve REPO --ray``: the same data plane scaled out as Ray Serve deployments.

    config.py        RayConfig: where the cluster is, replicas or autoscaling, resources
    packages.py      model packages as bytes in Ray's object store (no shared filesystem needed)
    remote.py        the ingress's view of the models: a repository whose batchers are handles
    deployments.py   ModelDeployment (one per model: repository + dynamic batching) and Ingress
                     (the HTTP route modules over a DataPlane whose models are remote)
    runner.py        connect to / start Ray, deploy, update in place, serve until stopped

The ingress runs the single-process server's ``DataPlane`` and ``HTTP_APIS`` unchanged; only the
version objects its repository hands out forward ``batcher.submit`` to a model deployment. Each
model replica runs a ``ModelRepository`` of its model, so batching, warm-up and version policy are
the ones the single-process server has.

Importing this package imports nothing heavy; Ray is imported on use (``modelport[ray]``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RayConfig", "build_app", "deploy", "serve_on_ray"]


def __getattr__(name: str) -> Any:
    if name == "RayConfig":
        from .config import RayConfig

        return RayConfig
    if name in ("build_app", "deploy", "serve_on_ray"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
