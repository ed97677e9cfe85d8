"""The ``torchserve`` target: a .mar built with torch-model-archiver, whose handler runs model.onnx
with ONNX Runtime (``templates/torchserve_handler.py``), or the package's processing around it
(``processed_mar``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import UsageError, VerificationError
from ..package import ModelPackage
from .base import PackageTargetConfig, TargetResult, model_name

__all__ = ["check_mar", "handler_source", "target_torchserve"]


def handler_source(name: str = "torchserve_handler.py") -> str:
    """The text of a handler shipped in the .mar: a module of ``modelport.deploy.templates``."""
    return files("modelport.deploy.templates").joinpath(name).read_text(encoding="utf-8")


def target_torchserve(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT/<name>.mar built with torch-model-archiver; the handler runs ONNX Runtime."""
    name = model_name(pkg, config)
    archiver = shutil.which("torch-model-archiver") or str(
        Path(sys.executable).parent / "torch-model-archiver"
    )
    if not Path(archiver).exists():
        raise UsageError(
            "the torchserve target needs torch-model-archiver: pip install 'modelport[deploy]'"
        )
    mar = out / f"{name}.mar"
    if mar.exists():
        raise UsageError(f"{mar} already exists; remove it or choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    with tempfile.TemporaryDirectory(dir=out) as tmpd:
        tmp = Path(tmpd)
        from .processed_mar import stage_processing

        extra = stage_processing(pkg, tmp)  # the package's processing/, when it has some
        (tmp / "handler.py").write_text(
            handler_source(
                "torchserve_handler.py" if extra is None else "torchserve_processed_handler.py"
            )
        )
        shutil.copy2(pkg.model_path, tmp / "model.onnx")
        manifest = tmp / "modelport.json"
        manifest.write_text(json.dumps(pkg.manifest, indent=2, default=str))
        stage = tmp / "stage"
        stage.mkdir()
        cmd = [
            archiver,
            "--model-name",
            name,
            "--version",
            str(config.version or 1),
            "--handler",
            str(tmp / "handler.py"),
            "--serialized-file",
            str(tmp / "model.onnx"),
            "--extra-files",
            str(manifest) if extra is None else f"{manifest},{extra}",
            "--export-path",
            str(stage),
            "--force",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise VerificationError(
                f"torch-model-archiver failed: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        shutil.move(str(stage / f"{name}.mar"), mar)
    if extra is None:
        checks = [check_mar(mar, pkg)]
    else:
        from .processed_mar import check_processed_mar

        checks = [check_processed_mar(mar, pkg)]
    return TargetResult(
        "torchserve",
        mar,
        [mar.name],
        checks,
        [
            "serve it with: torchserve --start --model-store DIR --models NAME=NAME.mar "
            "(TorchServe's Python backend also needs torch installed)"
        ],
    )


def check_mar(mar: Path, pkg: ModelPackage) -> str:
    """Unpack the .mar and run its handler on the package's stored sample inputs (its outputs
    compared with the stored sample outputs, when there are some), else on generated inputs
    (only the output names checked). The message says which ran, at which shapes."""
    import importlib.util
    import tempfile
    import types

    import numpy as np

    with tempfile.TemporaryDirectory() as d, zipfile.ZipFile(mar) as z:
        z.extractall(d)
        man = json.loads(Path(d, "MAR-INF", "MANIFEST.json").read_text())
        handler = Path(d, man["model"]["handler"])
        spec = importlib.util.spec_from_file_location("_mar_handler", handler)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        context = types.SimpleNamespace(system_properties={"model_dir": d}, manifest=man)
        samples = pkg.samples()
        inputs, outputs = samples if samples is not None else ({}, {})
        stored = bool(inputs)
        if stored:
            feed = inputs
        else:
            from ..data import package_feed

            # inputs at sizes of the model's kind (a detector takes 224 x 224 images, not the
            # 1 x 1 that unnamed dims defaulted to); two rows only where rows stack (not a
            # recurrent state with a batch dim of its own)
            batch = 2 if pkg.signature.batching()[0] is not None else None
            feed = package_feed(pkg, batch=batch)[0]
        body = json.dumps({k: np.asarray(v).tolist() for k, v in feed.items()}).encode()
        module.initialize(context)
        try:
            (result,) = module.handle([{"body": body}], context)
        except Exception as exc:
            raise VerificationError(
                f"the .mar handler failed on {_shapes(feed)}: {str(exc).splitlines()[0][:400]}"
            ) from exc
        if set(result) != set(pkg.signature.output_names):
            raise VerificationError(
                f"the .mar handler returned {sorted(result)}, expected {pkg.signature.output_names}"
            )
        compared = sorted(outputs) if stored else []
        for k in compared:
            if not np.allclose(np.asarray(result[k]), outputs[k], atol=1e-3, rtol=1e-3):
                raise VerificationError(
                    f"the .mar handler's output '{k}' differs from the package's samples"
                )
    source = "the package's stored sample inputs" if stored else "generated inputs"
    ran = f"{source} ({_shapes(feed)})"
    answered = ", ".join(pkg.signature.output_names)
    if compared:
        what = f"outputs match the stored sample outputs ({', '.join(compared)}; atol/rtol 1e-3)"
    elif stored:
        what = f"it answered {answered} (the package stores no sample outputs: values not compared)"
    else:
        what = (
            f"it answered {answered} (the package stores no samples: values not compared; "
            "convert with --example-inputs to store some)"
        )
    return (
        f".mar unpacks (MANIFEST handler={man['model']['handler']}) and its handler ran on "
        f"{ran}: {what}"
    )


def _shapes(feed: dict[str, Any]) -> str:
    """``x [2, 4] float32, mask [2, 7] int64``."""
    import numpy as np

    return ", ".join(f"{k} {list(np.shape(v))} {np.asarray(v).dtype}" for k, v in feed.items())
