"""A command for the error-handler tests: it runs "the user's code", which raises."""

from __future__ import annotations

import logging
import sys
import warnings

import click


def users_model() -> None:
    raise RuntimeError("shape mismatch in layer 3\n(second line of the message)")


@click.command()
@click.option("--noisy", is_flag=True, help="Print and log like a third-party library first.")
@click.option("--ok", is_flag=True, help="Succeed instead of raising.")
def boom(noisy: bool, ok: bool) -> int:
    """Raise from "user code"."""
    if noisy:
        from modelport.cli.ui import console

        with console.status("working..."):
            print("[torch.onnx] Obtain model graph ... done")
        sys.stderr.write("Collecting tensor data and making histogram ...\n")
        logging.warning("Axis 1 is out-of-range")
        logging.getLogger("transformers").warning("some library warning")
        logging.getLogger("modelport.test").warning("modelport's own warning")
        warnings.warn("a library DeprecationWarning", DeprecationWarning, stacklevel=1)
        console.print("our own output")
    if ok:
        return 0
    users_model()
    return 0
