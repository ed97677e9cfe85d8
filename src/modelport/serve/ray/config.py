"""How ``modelport serve --ray`` deploys: the cluster to use, replicas or autoscaling, resources."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError
from ..config import GRPC_LIMIT_RANGES

__all__ = ["NOT_WITH_RAY", "RayConfig", "parse_autoscale"]

_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

_IN_FRONT = "Ray Serve's proxy serves HTTP only: put {} in front of it (docs/ray.md)"
# The settings of the single-process server (``modelport serve`` parameter names) that Ray Serve
# deployments cannot honour -> why; the command line refuses them under --ray (cli/serve_ray.py)
NOT_WITH_RAY = {
    "grpc_port": "gRPC is not served through Ray; run the single-process server for gRPC",
    "tfserving_grpc_port": "gRPC is not served through Ray; run the single-process server for gRPC",
    "poll_s": "models on Ray change by deploying again (SIGHUP, or --detach), a rolling update",
    "management_port": "there is no management API under --ray",
    "management_host": "there is no management API under --ray",
    "management_token": "there is no management API under --ray",
    "management_token_file": "there is no management API under --ray",
    "allow_url_hosts": "there is no management API (registering models by URL) under --ray",
    "auth_token": _IN_FRONT.format("auth (a gateway, an ingress controller)"),
    "tls_cert": _IN_FRONT.format("TLS (a gateway, an ingress controller)"),
    "tls_key": _IN_FRONT.format("TLS (a gateway, an ingress controller)"),
    "header_timeout_s": "HTTP connections are Ray Serve's proxy's (its settings are Ray's)",
    "body_timeout_s": "HTTP connections are Ray Serve's proxy's (its settings are Ray's)",
    "keep_alive_timeout_s": "HTTP connections are Ray Serve's proxy's (its settings are Ray's)",
    "max_connections": "HTTP connections are Ray Serve's proxy's (its settings are Ray's)",
    "trust": "the replicas do not run custom processing handlers",
    # modelport serve's --grpc-* limit flags (parameters "grpc_" + a GrpcLimits field)
    **{
        "grpc_" + name: "gRPC is not served through Ray; run the single-process server for gRPC"
        for name in GRPC_LIMIT_RANGES
    },
}


def parse_autoscale(text: str) -> tuple[int, int]:
    """``"MIN:MAX"`` -> (MIN, MAX); UsageError otherwise."""
    lo, sep, hi = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(lo), int(hi)
    except ValueError:
        raise UsageError(
            f"--autoscale takes MIN:MAX replicas, e.g. 1:4; got {text!r}", got=text
        ) from None


@dataclass(frozen=True)
class RayConfig:
    """Where and how the model deployments run on Ray Serve.

    address: the Ray cluster: None starts a private local Ray for this command; "auto" joins the
        cluster this machine belongs to (``ray start`` ran here); "HOST:PORT" a cluster's GCS;
        "ray://HOST:10001" a remote cluster through Ray Client.
    replicas: replicas per model (and of the HTTP ingress) when not autoscaling.
    autoscale: (min, max) replicas per model; Ray Serve adds replicas while the requests queued
        or running per replica stay above ``target_ongoing_requests``.
    target_ongoing_requests: the autoscaler's target of requests in flight per replica.
    replica_cpus: CPUs each replica reserves (fractions allowed); ONNX Runtime gets that many
        threads (at least 1) unless the model's serving config says otherwise. "auto": share the
        cluster's available CPUs among the replicas (``capacity.auto_cpus``; resolved by
        ``deploy`` before anything is deployed).
    max_ongoing_requests: requests a replica takes at once (they meet in its dynamic batches);
        more wait in the handle's queue.
    ingress_replicas: replicas of the HTTP ingress (None: like the models).
    host, http_port: where Ray Serve's HTTP proxy listens (cluster-wide; only applied when this
        command starts Serve on the cluster).
    app_name: the Ray Serve application; deploying again under the same name updates it in place
        (a rolling update).
    object_store_mb, local_cpus: object store size and CPUs of a local Ray this command starts
        (ignored with ``address``).
    max_request_bytes: the largest HTTP body the ingress accepts.
    graceful_shutdown_s: how long a replica being replaced may take to finish its requests.
    deploy_timeout_s: how long ``deploy`` waits for every replica to run before it gives up.
    check_cpus: compare the CPUs the replicas reserve with the cluster's before deploying (turn
        off for clusters whose autoscaler adds nodes on demand).
    request_timeout_s: Ray Serve's HTTP proxy answers 408 to a request (health checks included)
        that has no answer after this long (only applied when this command starts Serve).
    strict_readiness: /v2/health/ready only when every model is READY (and at least one), as
        the single-process server's --strict-readiness; False: ready once deployed.
    """

    address: str | None = None
    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    target_ongoing_requests: float = 2.0
    replica_cpus: float | str = 1.0
    max_ongoing_requests: int = 64
    ingress_replicas: int | None = None
    host: str = "127.0.0.1"
    http_port: int = 8000
    app_name: str = "modelport"
    object_store_mb: int | None = None
    local_cpus: int | None = None
    max_request_bytes: int = 256 * 1024 * 1024
    graceful_shutdown_s: float = 20.0
    deploy_timeout_s: float = 300.0
    check_cpus: bool = True
    request_timeout_s: float = 60.0
    strict_readiness: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.replicas < 1:
            problems.append(f"replicas must be >= 1, got {self.replicas}")
        if self.autoscale is not None:
            lo, hi = self.autoscale
            if lo < 0 or hi < 1 or lo > hi:
                problems.append(f"autoscale needs 0 <= MIN <= MAX and MAX >= 1, got {lo}:{hi}")
        if self.target_ongoing_requests <= 0:
            problems.append(
                f"target_ongoing_requests must be > 0, got {self.target_ongoing_requests}"
            )
        if isinstance(self.replica_cpus, str):
            if self.replica_cpus != "auto":
                problems.append(
                    f"replica_cpus must be a number or 'auto', got {self.replica_cpus!r}"
                )
        elif self.replica_cpus < 0:
            problems.append(f"replica_cpus must be >= 0, got {self.replica_cpus}")
        if self.max_ongoing_requests < 1:
            problems.append(f"max_ongoing_requests must be >= 1, got {self.max_ongoing_requests}")
        if self.ingress_replicas is not None and self.ingress_replicas < 1:
            problems.append(f"ingress_replicas must be >= 1, got {self.ingress_replicas}")
        if not 0 <= self.http_port < 65536:
            problems.append(f"http_port must be a port number, got {self.http_port}")
        if not _APP_NAME.fullmatch(self.app_name):
            problems.append(
                f"app_name must be letters, digits, '_', '.', '-', got {self.app_name!r}"
            )
        if self.object_store_mb is not None and self.object_store_mb < 80:
            problems.append(
                f"object_store_mb must be >= 80 (Ray's minimum), got {self.object_store_mb}"
            )
        if self.local_cpus is not None and self.local_cpus < 1:
            problems.append(f"local_cpus must be >= 1, got {self.local_cpus}")
        if self.address is not None and not self.address.strip():
            problems.append("address must not be empty; leave it out to start a local Ray")
        if self.deploy_timeout_s <= 0:
            problems.append(f"deploy_timeout_s must be > 0, got {self.deploy_timeout_s}")
        if self.request_timeout_s <= 0:
            problems.append(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if problems:
            raise UsageError("invalid Ray settings: " + "; ".join(problems))

    @property
    def threads(self) -> int:
        """ONNX Runtime intra-op threads per replica: its reserved CPUs, at least 1."""
        return max(1, int(self.cpus))

    @property
    def cpus(self) -> float:
        """CPUs per model replica (``replica_cpus`` once "auto" is resolved)."""
        if isinstance(self.replica_cpus, str):
            raise UsageError("replica_cpus 'auto' is resolved against the cluster by deploy()")
        return float(self.replica_cpus)

    @property
    def ingress_cpus(self) -> float:
        """CPUs per ingress replica: like a model replica's, at most 0.5."""
        return min(self.cpus, 0.5)

    def initial_replicas(self, ingress: bool = False) -> int:
        """Replicas per model (or of the ingress) when the application starts."""
        if ingress and self.ingress_replicas is not None:
            return self.ingress_replicas
        if self.autoscale is None:
            return self.replicas
        return max(self.autoscale[0], 1)

    def scaling(self, ingress: bool = False) -> dict[str, Any]:
        """Ray Serve deployment options for the replica count (fixed or autoscaled)."""
        if ingress and self.ingress_replicas is not None:
            return {"num_replicas": self.ingress_replicas}
        if self.autoscale is None:
            return {"num_replicas": self.replicas}
        lo, hi = self.autoscale
        return {
            "num_replicas": "auto",
            "autoscaling_config": {
                "min_replicas": lo,
                "max_replicas": hi,
                "initial_replicas": max(lo, 1),
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": 3.0,
                "downscale_delay_s": 60.0,
            },
        }
