"""The ``--ray`` options of ``modelport serve`` and what they run (kept here so that the serve
command only declares them and hands over)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

__all__ = ["RAY_OPTIONS", "ray_options", "serve_with_ray"]

RAY_OPTIONS = (
    "ray",
    "address",
    "replicas",
    "autoscale",
    "target_ongoing_requests",
    "replica_cpus",
    "detach",
)


def ray_options(command: Callable) -> Callable:
    """Add the --ray options to a click command."""
    options = [
        click.option(
            "--ray",
            is_flag=True,
            help="Deploy on Ray Serve instead: one deployment per model, replicas across the "
            "cluster, the same HTTP APIs behind Ray Serve's proxy on --host/--http-port "
            "(docs/ray.md). Needs modelport[ray].",
        ),
        click.option(
            "--address",
            default=None,
            help="With --ray: the cluster (auto, HOST:PORT or ray://HOST:10001). Default: start "
            "a local Ray for this command.",
        ),
        click.option(
            "--replicas", type=int, default=1, show_default=True, help="With --ray: per model."
        ),
        click.option(
            "--autoscale",
            default=None,
            metavar="MIN:MAX",
            help="With --ray: autoscale each model between MIN and MAX replicas.",
        ),
        click.option(
            "--target-ongoing-requests",
            type=float,
            default=2.0,
            show_default=True,
            help="With --autoscale: requests in flight per replica the autoscaler aims for.",
        ),
        click.option(
            "--replica-cpus",
            type=float,
            default=1.0,
            show_default=True,
            help="With --ray: CPUs each replica reserves (fractions allowed); ONNX Runtime "
            "threads per replica default to this.",
        ),
        click.option(
            "--detach",
            is_flag=True,
            help="With --ray --address: deploy (or update) and exit, leaving it running.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def serve_with_ray(
    repository: str,
    settings: dict[str, Any],
    defaults: Any,
    http: dict[str, Any],
    refused: dict[str, Any],
) -> int:
    """Run ``modelport serve --ray``. ``http``: host, http_port, max_request_bytes and
    shutdown_grace; ``refused``: single-process-only options that were given (an error)."""
    from ...errors import UsageError
    from .config import RayConfig, parse_autoscale
    from .runner import serve_on_ray

    given = sorted(k for k, v in refused.items() if v)
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(
            f"{flags} cannot be used with --ray: Ray Serve's proxy serves HTTP only, without "
            "TLS, auth or the management API (docs/ray.md says how to add them in front)"
        )
    config = RayConfig(
        address=settings["address"],
        replicas=settings["replicas"],
        autoscale=parse_autoscale(settings["autoscale"]) if settings["autoscale"] else None,
        target_ongoing_requests=settings["target_ongoing_requests"],
        replica_cpus=settings["replica_cpus"],
        host=http["host"],
        http_port=http["http_port"],
        max_request_bytes=http["max_request_bytes"],
        graceful_shutdown_s=http["shutdown_grace"],
    )

    def on_ready(info: dict) -> None:
        click.echo(json.dumps(info), nl=True)

    serve_on_ray(repository, config, defaults, on_ready, detach=settings["detach"])
    return 0
