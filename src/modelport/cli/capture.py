"""Keep other libraries' output off the terminal while a command runs.

torch.onnx progress lines, transformers/tqdm progress bars, ONNX Runtime's calibration prints,
``WARNING:root:...`` log lines and Python warnings from dependencies are collected instead of
printed; ``--verbose`` lets them through. modelport's own log records (WARNING and up) still
reach stderr. Only Python-level output is captured: text a C/C++ library writes straight to the
file descriptors is not (TensorFlow's start-up lines are silenced where it is imported,
``convert.tensorflow.import_tensorflow``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator

from ..progress import set_stream
from . import ui

__all__ = ["Captured", "library_output"]


class Captured(io.StringIO):
    """What other libraries printed or logged while the command ran."""

    def lines(self) -> list[str]:
        # progress bars redraw with \r: keep the last state of each line
        return [ln.rsplit("\r", 1)[-1] for ln in self.getvalue().splitlines() if ln.strip("\r ")]

    def isatty(self) -> bool:  # progress bars: draw plainly, once
        return False


class _Handler(logging.Handler):
    """Root handler: modelport's own records go to the terminal, everyone else's to ``into``."""

    def __init__(self, into: Captured) -> None:
        super().__init__(logging.DEBUG)
        self.into = into
        self.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == "modelport" or record.name.startswith("modelport."):
                if record.levelno >= logging.WARNING:
                    err = ui.real_stream("stderr")
                    err.write(f"{record.levelname.lower()}: {record.getMessage()}\n")
                return
            self.into.write(self.format(record) + "\n")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def library_output(verbose: bool) -> Iterator[Captured | None]:
    """Capture other libraries' output for the duration of the block (unless ``verbose``)."""
    if verbose:
        yield None
        return
    captured = Captured()
    handler = _Handler(captured)
    root = logging.getLogger()
    saved = sys.stdout, sys.stderr, dict(ui._REAL)
    ui._REAL.update(stdout=sys.stdout, stderr=sys.stderr)
    # modelport's progress bars and phase lines go to the terminal, not into the capture
    saved_progress = set_stream(sys.stderr)
    root.addHandler(handler)
    logging.captureWarnings(True)
    sys.stdout = sys.stderr = captured
    try:
        yield captured
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        ui._REAL.clear()
        ui._REAL.update(saved[2])
        set_stream(saved_progress)
        logging.captureWarnings(False)
        root.removeHandler(handler)
