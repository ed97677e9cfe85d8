"""The README's examples run as written: every code block after a `<!-- readme-test -->` marker,
in order, in one fresh directory; blocks marked `<!-- readme-test: slow -->` (MiniLM quantization)
run after them in the same directory, in a test marked slow. docs/ pages: tests/test_docs.py.

A block may start a server in the background (`modelport serve REPO &`, stopped by `kill %1`):
the test gives it free ports (the block's localhost:8000 becomes its HTTP port; gRPC on any free
port; no management API), its curl calls fail on an HTTP error, and whatever the block started is
stopped when it ends, failed or not."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(
    r"<!-- readme-test(?P<slow>: slow)? -->\s*```(?P<lang>bash|python)\n(?P<code>.*?)```", re.S
)


def marked_blocks(path: Path, slow: bool = False) -> list[tuple[str, str]]:
    """(language, code) of the blocks marked for execution in ``path`` (the slow ones if
    ``slow``)."""
    return [
        (m["lang"], m["code"]) for m in MARKER.finditer(path.read_text()) if bool(m["slow"]) == slow
    ]


SERVE = re.compile(r"^(modelport serve \S+)(?=[^\n]*&[ \t]*(#[^\n]*)?$)", re.M)
# curl fails on an HTTP error (and shows the body) unless the block's own -f says so already
CURL_FAILS = (
    'curl() { case " $* " in *" -f "*|*" -sf "*|*" --fail "*) command curl "$@";; '
    '*) command curl --fail-with-body "$@";; esac; }\n'
)


def local_server(code: str) -> str:
    """``code`` with a background ``modelport serve REPO &`` on free ports (see the docstring)."""
    if not SERVE.search(code):
        return code
    from tests.serve_process import free_port

    port = free_port()
    code = SERVE.sub(rf"\1 --http-port {port} --grpc-port 0 --no-management", code)
    return CURL_FAILS + re.sub(r"\blocalhost:8000\b", f"localhost:{port}", code)


def run_blocks(blocks: list[tuple[str, str]], cwd: Path, what: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for lang, code in blocks:
        if lang == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", local_server(code)]
        else:
            cmd = [sys.executable, "-c", code]
        # its own process group: a server the block left running is stopped with it; output
        # to files, which a background server holding them open cannot block
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            popen = subprocess.Popen(
                cmd, cwd=cwd, env=env, text=True, start_new_session=True, stdout=out, stderr=err
            )
            try:
                popen.wait(timeout=1800)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGTERM)
                popen.wait()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
        assert proc.returncode == 0, (
            f"{what} {lang} block failed:\n{code}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("readme")
    run_blocks(marked_blocks(ROOT / "README.md"), cwd, "README")
    return cwd


def test_readme_has_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text


def test_readme_examples_run(readme_run):
    assert len(marked_blocks(ROOT / "README.md")) >= 3
    assert (readme_run / "out" / "digits" / "model.onnx").is_file()
    assert (readme_run / "out" / "minilm.json").stat().st_size > 0
    # the magnitude-pruned CNN is outside the default budget: written, and marked failed
    import json

    history = json.loads((readme_run / "out" / "digits-sparse" / "modelport.json").read_text())
    assert history["history"][-1]["passed"] is False


@pytest.mark.slow
def test_readme_slow_examples_run(readme_run):
    blocks = marked_blocks(ROOT / "README.md", slow=True)
    assert blocks
    run_blocks(blocks, readme_run, "README (slow)")
    assert (readme_run / "sentences.npz").is_file()
    for out in ("minilm-int8", "minilm-partial", "minilm-fused"):
        assert (readme_run / "out" / out / "model.onnx").is_file()


def test_processing_page_runs_in_the_readme_directory(readme_run):
    """docs/processing.md's Python example and curl commands, where the README leaves them
    (out/minilm, out/digits-images, digit.png, repo/), against one server of that repo."""
    page = (ROOT / "docs" / "processing.md").read_text()
    (python,) = [c for c in re.findall(r"```python\n(.*?)```", page, re.S) if "load(" in c]
    (curls,) = [c for c in re.findall(r"```bash\n(.*?)```", page, re.S) if "curl " in c]
    server = (
        "modelport serve repo &\n"
        "curl -sf --retry 120 --retry-all-errors --retry-delay 1 localhost:8000/v2/health/ready\n"
    )
    run_blocks(
        [("python", python), ("bash", server + curls + "kill %1\n")],
        readme_run,
        "docs/processing.md",
    )
