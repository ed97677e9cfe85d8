"""``modelport inspect``."""

from __future__ import annotations

import json

import click

from .ui import console, echo, human_bytes, table, write_json


@click.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--json-file", type=click.Path(), help="Also write the JSON to this file.")
def inspect(path: str, as_json: bool, json_file: str | None) -> int:
    """Show the signature, opset, size, op histogram, provenance and history of PATH
    (a package directory or an .onnx file)."""
    from ..describe import describe

    d = describe(path)
    if json_file:
        write_json(json_file, d)
    if as_json:
        echo(json.dumps(d, indent=2, default=str))
        return 0
    console.print(f"[bold]{d['name']}[/]  {d['model_file']}")
    console.print(
        f"opset {d['opset']} · {human_bytes(d['size_bytes'])} · {d['parameters']:,} parameters · "
        f"{d['nodes']} nodes · producer {d['producer'] or '-'}"
    )
    sig = d["signature"]
    rows = [("input", t["name"], t["dtype"], t["shape"]) for t in sig["inputs"]]
    rows += [("output", t["name"], t["dtype"], t["shape"]) for t in sig["outputs"]]
    console.print(table("Signature", ["", "name", "dtype", "shape"], rows))
    console.print(table("Ops", ["op", "count"], list(d["ops"].items())[:25]))
    prov = d["provenance"]
    if prov:
        console.print(
            table(
                "Provenance",
                ["key", "value"],
                [(k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in prov.items()],
            )
        )
    v = d["verification"]
    if v:
        console.print(
            f"verification: {'[green]passed[/]' if v.get('passed') else '[red]failed[/]'} "
            f"on {v.get('cases')} cases (atol={v.get('atol')}, rtol={v.get('rtol')}); "
            f"max abs diff {v.get('max_abs_diff')}"
        )
    if d["history"]:
        console.print(
            table(
                "History",
                ["step", "time", "details"],
                [
                    (
                        h.get("step"),
                        h.get("time"),
                        ", ".join(
                            f"{k}={v}"
                            for k, v in h.items()
                            if k not in ("step", "time", "notes", "report")
                        )[:160],
                    )
                    for h in d["history"]
                ],
            )
        )
    return 0
