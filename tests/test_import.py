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
