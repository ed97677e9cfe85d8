"""`import modelport` stays light: no torch, tensorflow, onnxruntime or grpc."""

from __future__ import annotations

import subprocess
import sys


def test_import_modelport_is_light():
    code = (
        "import sys, modelport, modelport.cli, modelport.package, modelport.verify, modelport.convert;"
        "heavy = [m for m in ('torch', 'tensorflow', 'onnxruntime', 'grpc', 'keras', 'sklearn') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_surface():
    import modelport

    assert set(modelport.__all__) >= {"ModelPackage", "ModelportError", "Signature", "__version__"}


def test_help_imports_neither_numpy_nor_rich():
    """`modelport --help` and `modelport serve --help` stay fast: no numpy, no rich (issue 16)."""
    for args in ("['--help']", "['serve', '--help']", "['--version']"):
        code = (
            "import sys, contextlib, io;"
            "from modelport.cli import main;"
            f"rc = main({args});"
            "heavy = [m for m in ('numpy', 'rich', 'onnx', 'torch') if m in sys.modules];"
            "sys.stderr.write('HEAVY=' + ','.join(heavy))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stderr.strip().endswith("HEAVY="), (args, out.stderr)


def test_version_comes_from_the_installed_metadata():
    from importlib.metadata import version

    import modelport

    assert modelport.__version__ == version("modelport")


def test_python_dash_m_modelport_is_the_cli():
    """`python -m modelport` runs the same command line (exit codes included)."""
    ok = subprocess.run(
        [sys.executable, "-m", "modelport", "--version"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "modelport" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "modelport", "nosuch"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "No such command" in bad.stderr
