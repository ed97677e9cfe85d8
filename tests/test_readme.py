"""The README's examples run as written: every code block after a `<!-- readme-test -->` marker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- readme-test -->\s*```(bash|python)\n(.*?)```", text, flags=re.S)


def test_readme_has_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text


def test_readme_examples_run(tmp_path):
    blocks = _blocks()
    assert len(blocks) >= 3
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for lang, code in blocks:
        if lang == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        else:
            cmd = [sys.executable, "-c", code]
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (
            f"README {lang} block failed:\n{code}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    assert (tmp_path / "out" / "digits" / "model.onnx").is_file()
    assert (tmp_path / "out" / "minilm.json").stat().st_size > 0
