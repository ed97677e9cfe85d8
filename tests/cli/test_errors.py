"""Every error a user can cause ends in one line of cause (and a next step), never a traceback,
with the exit code of the one table in modelport.cli.errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelport.cli import COMMANDS, main
from modelport.cli.errors import EXIT_CODE_HELP, EXIT_CODES, exit_code
from modelport.errors import (
    InputError,
    ModelportError,
    UsageError,
    VerificationError,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def boom(monkeypatch):
    monkeypatch.setitem(COMMANDS, "boom", ("tests.cli.boom_cmd", "boom", "Raise."))


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    """A package of a tiny ONNX MLP, x[batch,4] float32 -> y[batch,3]."""
    from modelport.convert import Source, convert
    from tests.conftest import tiny_onnx

    d = tmp_path_factory.mktemp("errs")
    return convert(Source.onnx(str(tiny_onnx.__wrapped__(d))), d / "tiny").package.path


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def _grpc_port():
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def run(capsys, args):
    code = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, " ".join(err.split())


def test_a_foreign_exception_is_one_line_and_exit_3(boom, capsys):
    code, _, err = run(capsys, ["boom"])
    assert code == 3
    assert "error: unexpected RuntimeError: shape mismatch in layer 3" in err
    assert "second line" not in err  # one line of cause
    assert "--debug" in err and "MODELPORT_DEBUG=1" in err  # the next step


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_shows_the_traceback(boom, capsys, monkeypatch, where):
    args = {"before": ["--debug", "boom"], "after": ["boom", "--debug"], "env": ["boom"]}[where]
    if where == "env":
        monkeypatch.setenv("MODELPORT_DEBUG", "1")
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "users_model" in err and "RuntimeError" in err


def test_library_output_is_captured_and_shown_with_verbose(boom, capsys):
    assert main(["boom", "--noisy", "--ok"]) == 0
    out, err = capsys.readouterr()
    assert "our own output" in out
    assert "modelport's own warning" in err
    for leak in ("[torch.onnx]", "Collecting tensor data", "Axis 1", "library warning",
                 "DeprecationWarning"):  # fmt: skip
        assert leak not in out + err
    # at least the print, the stderr line and the root log record; how many more depends on the
    # handlers and warning filters earlier tests left behind (a library that configured its own
    # logger, pytest recording the DeprecationWarning), so the count is a lower bound
    hidden = re.search(r"\((\d+) lines of output from other libraries hidden; --verbose shows", err)
    assert hidden and int(hidden.group(1)) >= 3, err
    assert main(["boom", "--noisy", "--ok", "--verbose"]) == 0
    out, err = capsys.readouterr()
    assert "[torch.onnx] Obtain model graph" in out
    assert "Collecting tensor data" in err  # (log records: pytest's own handler has them)


def test_a_failing_command_shows_the_last_library_lines(boom, capsys):
    assert main(["boom", "--noisy"]) == 3
    err = capsys.readouterr().err
    assert "last lines from other libraries:" in err and "Axis 1 is out-of-range" in err


def test_the_exit_code_table():
    assert exit_code(VerificationError("x")) == 1
    assert exit_code(UsageError("x")) == exit_code(InputError("x")) == 2
    assert exit_code(ModelportError("x")) == 2
    assert exit_code(FileNotFoundError(2, "No such file")) == 2
    assert exit_code(KeyboardInterrupt()) == 130
    assert exit_code(RuntimeError("x")) == exit_code(ValueError("x")) == 3
    assert sorted(set(EXIT_CODES.values())) == [1, 2, 3, 130]


def test_readme_and_help_state_the_table(capsys):
    """README.md and `modelport --help` say the same thing as EXIT_CODE_HELP."""
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert EXIT_CODE_HELP in out
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert EXIT_CODE_HELP in readme
    for code in sorted(set(EXIT_CODES.values())):
        assert re.search(rf"\b{code} ", EXIT_CODE_HELP)


def test_the_python_api_does_not_speak_cli(tmp_path):
    from modelport.package import atomic_output_dir

    with pytest.raises(UsageError) as info, atomic_output_dir(tmp_path):
        pass
    assert "force=True" in info.value.message


# (arguments, exit code, words the one-line error must contain); {pkg}, {tmp}, {grpc}, {busy}
# are filled in per test.
CASES = [
    (["inspect", "{tmp}/missing"], 2, "does not exist"),
    (["verify", "{tmp}"], 2, "is not a model package"),
    (["convert", "--bogus"], 2, "No such option"),
    (["convert", "--onnx", "{tmp}/nope.onnx", "-o", "{tmp}/o"], 2, "does not exist"),
    (["convert", "--onnx", "{pkg}/model.onnx", "-o", "{pkg}"], 2, "--force"),
    (["convert", "--torch", "no_such_module_xyz:build", "-o", "{tmp}/o"], 2, "no_such_module_xyz"),
    (["convert", "--torch", "a:b", "--init-args", "{{", "-o", "{tmp}/o"], 2, "not valid JSON"),
    (["convert", "-o", "{tmp}/o"], 2, "give exactly one source"),
    (["bench", "{pkg}", "--data", "{tmp}/i64.npz", "--repeats", "1"], 2, "dtype int64"),
    (["bench", "{pkg}", "--data", "{tmp}/names.npz", "--repeats", "1"], 2, "unknown input"),
    (["bench", "{pkg}", "--batch-sizes", "a,b"], 2, "comma-separated integers"),
    (["bench"], 2, "give one or more packages"),
    (["bench", "--server", "http://127.0.0.1:{busy}"], 2, "needs --model"),
    (
        ["bench", "--server", "http://127.0.0.1:{grpc}", "--model", "m"],
        2,
        "not an HTTP server (a gRPC port?)",
    ),  # fmt: skip
    (["bench", "--server", "http://127.0.0.1:{closed}", "--model", "m"], 2, "cannot reach"),
    (["quantize", "{pkg}", "-o", "{tmp}/q", "--smoothing", "x"], 2, "--smoothing 'x'"),
    (["quantize", "{pkg}", "-o", "{tmp}/q", "--mode", "int3"], 2, "Invalid value"),
    (["prune", "{pkg}", "-o", "{tmp}/p"], 2, "Missing option '--sparsity'"),
    (["plan", "{pkg}", "-o", "{tmp}/pl", "--latency-dim", "x"], 2, "NAME=SIZE"),
    (["inspect", "{pkg}", "--json-file", "{tmp}/afile/x.json"], 2, "File exists"),
    (["package", "{pkg}", "--target", "nope", "-o", "{tmp}/x"], 2, "Invalid value"),
    (["serve", "{tmp}/empty"], 2, "no model found"),
    (["serve", "{tmp}/folder_of_packages"], 2, "modelport serve"),
    (["serve", "{pkg}", "--http-port", "{busy}", "--no-management"], 2, "cannot listen for HTTP"),
    (
        ["serve", "{pkg}", "--http-port", "0", "--grpc-port", "{busy}", "--no-management"],
        2,
        "cannot listen for gRPC",
    ),  # fmt: skip
]


@pytest.mark.parametrize("args, code, words", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_error_paths(pkg, tmp_path, capsys, args, code, words):
    import shutil

    np.savez(tmp_path / "i64.npz", x=np.zeros((2, 4), np.int64))
    np.savez(tmp_path / "names.npz", q=np.zeros((2, 4), np.float32))
    (tmp_path / "afile").write_text("")
    (tmp_path / "empty").mkdir()
    shutil.copytree(pkg, tmp_path / "folder_of_packages" / "tiny")
    busy = _busy_port()
    closed = _busy_port()
    closed_port = closed.getsockname()[1]
    closed.close()
    grpc_server, grpc_port = _grpc_port()
    try:
        fill = {"pkg": pkg, "tmp": tmp_path, "busy": busy.getsockname()[1], "grpc": grpc_port,
                "closed": closed_port}  # fmt: skip
        got, _, err = run(capsys, [a.format(**fill) for a in args])
    finally:
        busy.close()
        grpc_server.stop(None)
    assert got == code, err
    assert words in err, err


def test_no_traceback_from_the_installed_entry_point(tmp_path):
    """The real `modelport` process: one error line, exit 2; MODELPORT_DEBUG=1 adds the trace."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    cmd = [sys.executable, "-c", "import sys; from modelport.cli import main; sys.exit(main())"]
    p = subprocess.run([*cmd, "verify", str(tmp_path)], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1
    env["MODELPORT_DEBUG"] = "1"
    p = subprocess.run([*cmd, "verify", str(tmp_path)], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "Traceback" in p.stderr and "PackageError" in p.stderr


def test_json_output_of_inspect_is_not_captured(pkg, capsys):
    assert main(["inspect", str(pkg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["signature"]["inputs"][0]["name"] == "x"
