"""``modelport bench``: in-process (packages) or against a running V2 server (``--server``)."""

from __future__ import annotations

from typing import Any

import click

from ..errors import UsageError
from .options import given, refuse_inapplicable
from .params import DIM_SIZE, ENGINE_SPECS, INT_LIST
from .ui import console, console_err, table, write_json

# option -> the modes it applies to (options not listed apply to all); the rest are refused
MODES = {
    "inprocess": "packages (in-process)",
    "server": "--server URL",
    "ceiling": "--ceiling",
}
APPLIES: dict[str, tuple[str, ...]] = {
    "batch_sizes": ("inprocess",),
    "threads": ("inprocess",),
    "providers": ("inprocess",),
    "engines": ("inprocess",),
    "warmup": ("inprocess",),
    "repeats": ("inprocess",),
    "block_ms": ("inprocess",),
    "shapes": ("inprocess", "server"),
    "data": ("inprocess", "server"),
    "plot": ("inprocess", "server"),
    "report": ("inprocess", "server"),
    "model": ("server",),
    "model_version": ("server",),
    "protocol": ("server",),
    "requests": ("server",),
    "rate": ("server",),
    "batch_size": ("server", "inprocess"),  # in-process: the same as --batch-sizes N
    "package": ("server",),
    "timeout": ("server",),
    "no_ceiling": ("server",),
    "concurrency": ("server", "ceiling"),
    "http_client": ("server", "ceiling"),
}


HINTS = {
    "batch_sizes": "against a server, --batch-size N sets the rows of each request",
    "threads": "the server's threads are set where it starts (modelport serve --threads)",
}


@click.command(context_settings={"show_default": True})
@click.argument("models", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--batch-sizes", type=INT_LIST, default="1", help="In-process: batch sizes, e.g. 1,8,32."
)
@click.option(
    "--threads",
    type=INT_LIST,
    default=None,
    help="In-process: ORT intra-op threads, e.g. 1,2 (0 = ORT default).",
)
@click.option("--providers", default="cpu", help="In-process: execution providers, e.g. cpu,cuda.")
@click.option(
    "--engine",
    "engines",
    type=ENGINE_SPECS,
    default="ort",
    help="In-process: engines to compare, interleaved: ort, openvino, openvino:bf16, or "
    "package (what the package's serving section names), e.g. ort,openvino:bf16.",
)
@click.option(
    "--shape",
    "shapes",
    type=DIM_SIZE,
    multiple=True,
    help="A symbolic dim, NAME=SIZE (repeatable), e.g. sequence=128.",
)
@click.option(
    "--data", type=click.Path(exists=True), help="Inputs (.npz/.npy/dir) instead of generated ones."
)
@click.option("--warmup", default=5, help="In-process: untimed runs per model first.")
@click.option("--repeats", default=30, help="In-process: timed runs per model (at least).")
@click.option(
    "--block-ms",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="In-process: a model faster than this runs this long in a row per turn (every run "
    "timed; sub-ms models alternating run by run measure cold starts). 0: alternate every run.",
)
@click.option(
    "--seconds",
    type=float,
    help="Measure for this long (per model in-process; per concurrency on a server).",
)
@click.option("--json", "json_file", type=click.Path(), help="Write the full result as JSON.")
@click.option("--plot", type=click.Path(), help="Draw the plots to this PNG.")
@click.option(
    "--report",
    type=click.Path(),
    help="Write a Markdown (.md) or HTML (.html) report with the plots.",
)
@click.option(
    "--server",
    help="Bench a running V2 server instead, e.g. http://127.0.0.1:8000 (loopback only).",
)
@click.option("--model", help="Server: the model name.")
@click.option("--model-version", help="Server: the model version (default: the server's choice).")
@click.option(
    "--protocol",
    type=click.Choice(["http-json", "http-binary", "grpc"]),
    default="http-json",
    help="Server: protocol.",
)
@click.option(
    "--concurrency", type=INT_LIST, default="1", help="Server: concurrencies, e.g. 1,8,32."
)
@click.option("--requests", type=int, help="Server: requests per concurrency (default: 5 seconds).")
@click.option(
    "--rate",
    type=float,
    help="Server: open loop at this many requests/s (concurrency = max in flight).",
)
@click.option(
    "--batch-size",
    default=1,
    help="Server: batch size of each request. In-process: the same as --batch-sizes N.",
)
@click.option(
    "--package",
    type=click.Path(exists=True),
    help="Server: take the input signature from this package.",
)
@click.option(
    "--http-client", type=click.Choice(["raw", "httpx"]), default="raw", help="Server: HTTP client."
)
@click.option("--timeout", type=float, default=30.0, help="Server: seconds a request may take.")
@click.option(
    "--no-ceiling",
    is_flag=True,
    help="Server: skip measuring the client against a trivial endpoint.",
)
@click.option(
    "--ceiling",
    "ceiling_only",
    is_flag=True,
    help="Only measure the load generator against a trivial endpoint, for each protocol.",
)
@click.pass_context
def bench(ctx: click.Context, models: tuple[str, ...], **opts: Any) -> int:
    """Latency, throughput and memory of MODELS (packages or .onnx files, interleaved in one
    process, ratios against the first), or of a running server with --server.

    Options marked "In-process:" or "Server:" are refused in the other mode."""
    mode = "ceiling" if opts["ceiling_only"] else "server" if opts["server"] else "inprocess"
    if mode == "ceiling" and (models or opts["server"]):
        raise UsageError("--ceiling measures the load generator alone; drop the packages/--server")
    refuse_inapplicable(ctx, APPLIES, mode, MODES, HINTS)
    if mode == "ceiling":
        return _ceiling(opts)
    if models and opts["server"]:
        raise UsageError("give either packages to bench in-process or --server, not both")
    if not models and not opts["server"]:
        raise UsageError("give one or more packages (or .onnx files), or --server URL --model NAME")
    if mode == "inprocess" and given(ctx, "batch_size"):
        if given(ctx, "batch_sizes"):
            raise UsageError("give --batch-sizes (a list) or --batch-size, not both")
        opts["batch_sizes"] = (opts["batch_size"],)
    result = _server(opts) if opts["server"] else _inprocess(models, opts)
    d = result.to_dict()
    _show(d)
    if opts["json_file"]:
        write_json(opts["json_file"], d)
        console.print(f"wrote {opts['json_file']}")
    if opts["plot"]:
        from ..bench.plot import plot_result

        plot_result(d, opts["plot"])
        console.print(f"wrote {opts['plot']}")
    if opts["report"]:
        from ..bench.report import write_report

        out = write_report(d, opts["report"], opts["plot"])
        console.print(f"wrote {out}")
    if d["kind"] == "server":
        for r in d["rows"]:
            if r.get("first_error"):
                console_err.print(
                    f"concurrency {r['concurrency']}: {r['errors']} failed; the first: "
                    f"{r['first_error']}",
                    markup=False,
                )
        if not any(r["ok"] for r in d["rows"]):
            console_err.print("[red]no request succeeded[/]")
            return 1
    return 0


def _progress(line: str) -> None:
    console_err.print(f"[dim]… {line}[/]")


def _inprocess(models: tuple[str, ...], opts: dict[str, Any]):
    from ..bench import LatencyConfig, SweepConfig, bench_models

    if opts["seconds"] is not None:
        latency = LatencyConfig.timed(
            opts["seconds"], warmup=opts["warmup"], block_ms=opts["block_ms"]
        )
    else:
        latency = LatencyConfig(
            warmup=opts["warmup"], repeats=opts["repeats"], block_ms=opts["block_ms"]
        )
    config = SweepConfig(
        batch_sizes=opts["batch_sizes"],
        threads=opts["threads"] or (),
        providers=tuple(p.strip() for p in opts["providers"].split(",") if p.strip()),
        dims=opts["shapes"],
        latency=latency,
        data=opts["data"],
        engines=tuple(opts["engines"]),
    )
    return bench_models(list(models), config, progress=_progress)


def _server(opts: dict[str, Any]):
    from ..bench.load import LoadConfig, LoadTarget, bench_server, fetch_metadata
    from ..bench.sweep import make_feed
    from ..bench.v2 import signature_from_metadata
    from ..data import load_feed, recorded_dims
    from ..package import ModelPackage

    if not opts["model"]:
        raise UsageError("--server needs --model NAME (the model to send requests to)")
    target = LoadTarget(opts["server"], opts["model"], opts["model_version"], opts["protocol"])
    meta = fetch_metadata(target)
    signature = (
        ModelPackage.load(opts["package"]).signature
        if opts["package"]
        else signature_from_metadata(meta)
    )
    data = load_feed(opts["data"], signature) if opts["data"] else None
    # a local package: generated at the sizes it was converted at (a recognizer's height 48)
    dims = recorded_dims(ModelPackage.load(opts["package"])) if opts["package"] else {}
    feed = make_feed(signature, opts["batch_size"], {**dims, **dict(opts["shapes"])}, data)
    config = LoadConfig(
        requests=opts["requests"],
        seconds=opts["seconds"],
        rate=opts["rate"],
        timeout_s=opts["timeout"],
        http_client=opts["http_client"],
    )
    conc = opts["concurrency"]
    return bench_server(target, feed, conc, config, ceiling=not opts["no_ceiling"],
                        metadata=meta, progress=_progress)  # fmt: skip


def _ceiling(opts: dict[str, Any]) -> int:
    from ..bench.load import PROTOCOLS, measure_ceiling

    conc = max(opts["concurrency"])
    seconds = opts["seconds"] or 2.0
    rows = []
    for protocol in PROTOCOLS:
        _progress(f"trivial {protocol} endpoint, concurrency {conc}")
        rows.append(measure_ceiling(protocol, conc, seconds, opts["http_client"]))
    cols = [
        "protocol",
        "concurrency",
        "http_client",
        "req_s",
        "p50_ms",
        "errors",
        "client_cpu_cores",
    ]
    console.print(table("load generator ceiling against a trivial endpoint (another process)",
                        cols, [[r[c] for c in cols] for r in rows]))  # fmt: skip
    if opts["json_file"]:
        write_json(opts["json_file"], {"kind": "ceiling", "rows": rows})
    return 0


def _show(d: dict[str, Any]) -> None:
    from ..bench.report import result_table

    cols, rows = result_table(d)
    if d["kind"] == "server":
        t = d["target"]
        title = f"{t['model']} at {t['url']} ({t['protocol']})"
    else:
        title = "interleaved in one process; speed-up = first model's p50 / this p50"
    console.print(table(title, cols, rows))
    if d["kind"] == "server" and d.get("ceiling"):
        c = d["ceiling"]
        console.print(
            f"load generator ceiling (trivial {c['protocol']} endpoint, concurrency "
            f"{c['concurrency']}): {c['req_s']:.0f} req/s"
        )
    for r in d["rows"]:
        if d["kind"] == "server" and r["client_cpu_cores"] > 0.9 and r["protocol"] != "grpc":
            console_err.print(
                f"[yellow]warning:[/] the load generator used {r['client_cpu_cores']:.2f} cores at "
                f"concurrency {r['concurrency']}; it may have been the bottleneck"
            )
