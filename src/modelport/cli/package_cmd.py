"""``modelport package``."""

from __future__ import annotations

import click

from .ui import console, table, write_json


@click.command()
@click.argument("package", type=click.Path(exists=True))
@click.option(
    "--target",
    required=True,
    type=click.Choice(["repo", "triton", "torchserve", "kserve", "docker"]),
    help="Where the model will run.",
)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(),
    help="repo/triton: the repository root; torchserve: the model store; kserve/docker: a new directory.",
)
@click.option(
    "--name", default=None, help="Model name in the target (default: the package's name)."
)
@click.option(
    "--version",
    "model_version",
    type=int,
    default=None,
    help="Model version (default 1; repo: next free).",
)
@click.option(
    "--max-batch-size", type=int, default=None, help="Dynamic batching limit (Triton, serve)."
)
@click.option("--max-queue-delay-ms", type=float, default=None, help="Dynamic batching delay.")
@click.option(
    "--instances", type=int, default=None, help="Model instances (Triton instance_group count)."
)
@click.option(
    "--image",
    default=None,
    help="Container image the KServe manifest runs (default: modelport-NAME:VERSION, the tag "
    "the docker target's build note uses).",
)
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="docker: the modelport wheel to install in the image (default: built from this "
    "modelport's source checkout with pip wheel).",
)
@click.option("--storage-uri", default=None, help="KServe storageUri for the model repository.")
@click.option(
    "--json", "json_out", type=click.Path(), help="Write what was produced and checked as JSON."
)
def package(
    package: str,
    target: str,
    out: str,
    name: str | None,
    model_version: int | None,
    max_batch_size: int | None,
    max_queue_delay_ms: float | None,
    instances: int | None,
    image: str | None,
    wheel: str | None,
    storage_uri: str | None,
    json_out: str | None,
) -> int:
    """Package PACKAGE for a deployment target, then validate the artifact as far as this machine
    allows (config parses, the .mar's handler runs on the package's stored samples, or on
    generated inputs when it stores none, YAML against the schema, the
    Dockerfile lints)."""
    from ..deploy import PackageTargetConfig, package_for

    config = PackageTargetConfig(
        name=name,
        version=model_version,
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        instances=instances,
        image=image,
        storage_uri=storage_uri,
        wheel=wheel,
    )
    result = package_for(package, target, out, config)
    console.print(f"wrote {target} artifact: {result.path}")
    console.print(table("Files", ["file"], [(f,) for f in result.files]))
    for c in result.checks:
        console.print(f"[green]check:[/] {c}")
    for n in result.notes:
        console.print(f"[yellow]note:[/] {n}")
    if json_out:
        write_json(json_out, result.to_dict())
    return 0
