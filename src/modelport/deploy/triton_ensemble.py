"""The ``triton`` target for a package with processing: a Triton ensemble that carries it.

    OUT/NAME/config.pbtxt             platform "ensemble": the package's public inputs and outputs
    OUT/NAME/<v>/                     (empty: an ensemble has no files, Triton wants the folder)
    OUT/NAME_preprocess/              Python backend: text or images -> the graph's inputs
        config.pbtxt, <v>/model.py, <v>/modelport.json, <v>/processing/
    OUT/NAME_raw/                     ONNX Runtime backend: the bare graph (as NAME_raw under
        config.pbtxt, <v>/model.onnx  modelport serve), reachable by clients that tokenize
    OUT/NAME_postprocess/             Python backend: graph inputs + outputs -> the answer
        config.pbtxt, <v>/model.py, <v>/modelport.json, <v>/processing/

A half is left out when the package has no steps of that kind. Both Python models run
``templates/triton_model.py`` (``modelport_step`` "pre" or "post" in their config) with
``modelport.processing``, so Triton's Python needs ``pip install 'modelport[serve]'``.

The repository is checked here without a server: every config.pbtxt parses as Triton's
ModelConfig, the ensemble's wiring is consistent (each step's inputs are all mapped from tensors
that exist, with the same data types; every ensemble output is produced), and the ensemble runs
on a sample text or image, model.py under a stub of ``triton_python_backend_utils``, the graph
with ONNX Runtime; its answer must equal ``modelport.load``'s.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, VerificationError, output_exists
from ..package import PROCESSING_DIR, ModelPackage
from ..processing import Pipeline, Processing
from ..signature import TensorSpec
from .triton import tensor_blocks, triton_config

__all__ = [
    "STEP_PARAMETER",
    "check_ensemble",
    "ensemble_names",
    "run_ensemble",
    "write_ensemble",
]

STEP_PARAMETER = "modelport_step"


def ensemble_names(name: str, processing: Processing) -> dict[str, str | None]:
    """The repository's models: ensemble, preprocess (None without pre steps), raw graph,
    postprocess (None without post steps)."""
    return {
        "ensemble": name,
        "pre": f"{name}_preprocess" if processing.pre else None,
        "raw": f"{name}_raw",
        "post": f"{name}_postprocess" if processing.post else None,
    }


def _python_config(
    name: str,
    step: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    serving: dict[str, Any],
) -> str:
    batched = serving["max_batch_size"] > 0
    lines = [
        f'name: "{name}"',
        'backend: "python"',
        f"max_batch_size: {serving['max_batch_size']}",
        f"input [\n{tensor_blocks(inputs, batched)}\n]",
        f"output [\n{tensor_blocks(outputs, batched)}\n]",
        f"instance_group [\n  {{\n    count: {serving['instances']}\n    kind: KIND_CPU\n  }}\n]",
        f'parameters {{\n  key: "{STEP_PARAMETER}"\n  value: {{ string_value: "{step}" }}\n}}',
    ]
    return "\n".join(lines) + "\n"


def _maps(pairs: Mapping[str, str], field: str) -> str:
    return "".join(
        f'      {field} {{\n        key: "{k}"\n        value: "{v}"\n      }}\n'
        for k, v in pairs.items()
    )


def _ensemble_config(
    names: Mapping[str, str | None], pipe: Pipeline, serving: dict[str, Any]
) -> str:
    """Tensors inside the ensemble: the public inputs and outputs by their names, the graph's
    inputs as ``pre_<name>``, its outputs as ``raw_<name>``."""
    graph_in = [t.name for t in pipe.graph.inputs]
    graph_out = [t.name for t in pipe.graph.outputs]
    public_in = pipe.signature.input_names
    public_out = pipe.output_names
    steps: list[tuple[str, dict[str, str], dict[str, str]]] = []
    if names["pre"]:
        steps.append((names["pre"], {n: n for n in public_in}, {n: f"pre_{n}" for n in graph_in}))
        graph_source = {n: f"pre_{n}" for n in graph_in}
    else:
        graph_source = {n: n for n in graph_in}
    if names["post"]:
        raw_out = {n: f"raw_{n}" for n in graph_out}
    else:
        raw_out = {n: n for n in public_out}
    steps.append((str(names["raw"]), graph_source, raw_out))
    if names["post"]:
        source = {**graph_source, **raw_out}
        steps.append(
            (names["post"], {n: source[n] for n in pipe.post_reads}, {n: n for n in public_out})
        )
    batched = serving["max_batch_size"] > 0
    blocks = [
        f'    {{\n      model_name: "{model}"\n      model_version: -1\n'
        + _maps(inputs, "input_map")
        + _maps(outputs, "output_map")
        + "    }"
        for model, inputs, outputs in steps
    ]
    lines = [
        f'name: "{names["ensemble"]}"',
        'platform: "ensemble"',
        f"max_batch_size: {serving['max_batch_size']}",
        f"input [\n{tensor_blocks(pipe.signature.inputs, batched)}\n]",
        f"output [\n{tensor_blocks(pipe.signature.outputs, batched)}\n]",
        "ensemble_scheduling {\n  step [\n" + ",\n".join(blocks) + "\n  ]\n}",
    ]
    return "\n".join(lines) + "\n"


def _pipeline(pkg: ModelPackage) -> Pipeline:
    processing = Processing.of(pkg.manifest)
    if processing is None:
        raise UsageError("this package has no processing; the plain triton target serves it")
    if processing.handler is not None:
        raise UsageError(
            "a custom handler cannot be carried into Triton (it runs only under modelport serve "
            "--trust)"
        )
    return Pipeline(processing, pkg.path, pkg.signature)


def write_ensemble(
    pkg: ModelPackage, name: str, serving: dict[str, Any], version: int, repo: Path
) -> dict[str, str | None]:
    """Write the ensemble's models into the (existing) repository folder ``repo``."""
    pipe = _pipeline(pkg)
    names = ensemble_names(name, pipe.processing)
    graph_env = {t.name: t for t in (*pipe.graph.inputs, *pipe.graph.outputs)}
    model_py = files("modelport.deploy.templates").joinpath("triton_model.py").read_bytes()
    manifest = json.dumps(pkg.manifest, indent=2, default=str)

    def python_model(model: str, step: str, ins: list[TensorSpec], outs: list[TensorSpec]) -> None:
        folder = repo / model / str(version)
        folder.mkdir(parents=True)
        (repo / model / "config.pbtxt").write_text(_python_config(model, step, ins, outs, serving))
        (folder / "model.py").write_bytes(model_py)
        (folder / "modelport.json").write_text(manifest)
        shutil.copytree(pkg.path / PROCESSING_DIR, folder / PROCESSING_DIR)

    if names["pre"]:
        python_model(names["pre"], "pre", list(pipe.signature.inputs), list(pipe.graph.inputs))
    raw = str(names["raw"])
    (repo / raw / str(version)).mkdir(parents=True)
    shutil.copy2(pkg.model_path, repo / raw / str(version) / "model.onnx")
    ext = pkg.model_path.parent / "model.onnx.data"
    if ext.exists():
        shutil.copy2(ext, repo / raw / str(version) / ext.name)
    (repo / raw / "config.pbtxt").write_text(triton_config(pkg, raw, serving))
    if names["post"]:
        reads = [graph_env[n] for n in pipe.post_reads]
        python_model(names["post"], "post", reads, list(pipe.signature.outputs))
    (repo / name / str(version)).mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(_ensemble_config(names, pipe, serving))
    return names


def target_ensemble(
    pkg: ModelPackage, name: str, serving: dict[str, Any], version: int, out: Path
) -> tuple[list[str], list[str]]:
    """Write the ensemble under ``out`` (atomically: checked in a staging folder first) ->
    (files, checks)."""
    pipe = _pipeline(pkg)
    names = [n for n in ensemble_names(name, pipe.processing).values() if n]
    for n in names:
        if (out / n).exists():
            raise output_exists(out / n)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".triton-", dir=out) as tmpd:
        stage = Path(tmpd)
        write_ensemble(pkg, name, serving, version, stage)
        checks = check_ensemble(stage, name, pkg)
        for n in names:
            shutil.move(str(stage / n), out / n)
    listing = sorted(
        str(p.relative_to(out)) for n in names for p in (out / n).rglob("*") if p.is_file()
    )
    return listing, checks


# --- checks ---------------------------------------------------------------------------------


def _parse(path: Path) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise VerificationError(f"{path} is not a Triton ModelConfig: {exc}") from None


def check_ensemble(repo: Path, name: str, pkg: ModelPackage) -> list[str]:
    """Parse every config, check the ensemble's wiring, run it on a sample (see the module doc)."""
    try:
        import tritonclient.grpc.model_config_pb2  # noqa: F401
    except ImportError:
        return ["config.pbtxt files written (tritonclient not installed: not parsed or run)"]
    ensemble = _parse(repo / name / "config.pbtxt")
    if ensemble.platform != "ensemble":
        raise VerificationError(f"{repo / name}/config.pbtxt is not an ensemble")
    tensors = {t.name: t.data_type for t in ensemble.input}
    models = []
    for step in ensemble.ensemble_scheduling.step:
        path = repo / step.model_name / "config.pbtxt"
        if not path.is_file():
            raise VerificationError(f"the ensemble runs {step.model_name}, which has no {path}")
        cfg = _parse(path)
        models.append(cfg)
        where = f"{name}'s step {step.model_name}"
        wanted = {t.name: t.data_type for t in cfg.input}
        if set(step.input_map) != set(wanted):
            raise VerificationError(
                f"{where} maps inputs {sorted(step.input_map)}, the model takes {sorted(wanted)}"
            )
        for key, tensor in step.input_map.items():
            if tensor not in tensors:
                raise VerificationError(
                    f"{where} reads '{tensor}', which nothing produces before it"
                )
            if tensors[tensor] != wanted[key]:
                raise VerificationError(
                    f"{where}: '{tensor}' and input '{key}' differ in data type"
                )
        produced = {t.name: t.data_type for t in cfg.output}
        for key, tensor in step.output_map.items():
            if key not in produced:
                raise VerificationError(f"{where} maps output '{key}', which the model lacks")
            tensors[tensor] = produced[key]
        if cfg.max_batch_size < ensemble.max_batch_size:
            raise VerificationError(f"{where}: max_batch_size below the ensemble's")
        folder = repo / step.model_name / "1"
        needed = "model.py" if cfg.backend == "python" else "model.onnx"
        if not any(
            (p / needed).is_file() for p in (repo / step.model_name).iterdir() if p.is_dir()
        ):
            raise VerificationError(
                f"{step.model_name} has no {needed} in a version folder ({folder})"
            )
    for t in ensemble.output:
        if tensors.get(t.name) != t.data_type:
            raise VerificationError(f"{name}'s output '{t.name}' is not produced by any step")
    kinds = " -> ".join(f"{m.name} ({m.backend or m.platform})" for m in models)
    checks = [
        f"{1 + len(models)} config.pbtxt parse as Triton ModelConfig; the ensemble's wiring is "
        f"consistent: {kinds}"
    ]
    checks.append(_check_answer(repo, name, pkg))
    return checks


def _sample_inputs(pipe: Pipeline, pkg: ModelPackage) -> dict[str, Any]:
    from ..data import generate_feed
    from .processed_mar import sample_input

    pre = {s.input: s for s in pipe.processing.pre}
    samples = pkg.samples()
    feed = samples[0] if samples else generate_feed(pkg.signature, {"batch": 2})
    out: dict[str, Any] = {}
    for t in pipe.signature.inputs:
        if t.name in pre:
            out[t.name] = [sample_input(pre[t.name])]
        else:
            out[t.name] = np.asarray(feed[t.name])[:1]
    return out


def _as_triton(value: Any) -> np.ndarray:
    """A request tensor as Triton delivers it: BYTES as [n, 1] np.object_ of bytes."""
    if isinstance(value, list):
        arr = np.empty((len(value), 1), dtype=np.object_)
        arr[:, 0] = [v.encode() if isinstance(v, str) else v for v in value]
        return arr
    return np.asarray(value)


def _check_answer(repo: Path, name: str, pkg: ModelPackage) -> str:
    expected_pipe = Pipeline.load(pkg)
    inputs = _sample_inputs(expected_pipe, pkg)
    expected = expected_pipe(inputs)
    got = run_ensemble(repo, name, {k: _as_triton(v) for k, v in inputs.items()})
    for k, ref in expected.items():
        ans = np.asarray(got[k]).reshape(np.asarray(ref).shape)
        if ref.dtype.kind in "OSU":
            same = [a.decode() if isinstance(a, bytes) else a for a in ans.ravel()] == [
                r.decode() if isinstance(r, bytes) else r for r in ref.ravel()
            ]
        else:
            same = np.allclose(ans.astype(np.float64), ref, atol=1e-4, rtol=1e-4)
        if not same:
            raise VerificationError(
                f"the Triton ensemble's output '{k}' differs from the package's pipeline"
            )
    kind = ", ".join(s.kind for s in expected_pipe.processing.pre) or "tensor"
    return (
        f"the ensemble ran on a sample ({kind} in; model.py under a stub of "
        f"triton_python_backend_utils, the graph on ONNX Runtime): "
        f"{', '.join(expected)} match modelport.load"
    )


# --- running the ensemble without a server --------------------------------------------------


def _python_model(folder: Path, cfg: Any, version: str) -> Any:
    from google.protobuf import json_format

    from . import triton_python_stub

    with triton_python_stub.installed():
        spec = importlib.util.spec_from_file_location(
            f"_triton_model_{cfg.name}", folder / version / "model.py"
        )
        if spec is None or spec.loader is None:
            raise VerificationError(f"cannot load {folder / version / 'model.py'}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.TritonPythonModel()
        model.initialize(
            {
                "model_config": json_format.MessageToJson(cfg, preserving_proto_field_name=True),
                "model_repository": str(folder),
                "model_version": version,
                "model_name": cfg.name,
                "model_instance_kind": "CPU",
                "model_instance_name": f"{cfg.name}_0",
            }
        )
    return model


def run_ensemble(
    repo: Path, name: str, inputs: Mapping[str, np.ndarray], version: int = 1
) -> dict[str, np.ndarray]:
    """Run the ensemble ``name`` of a repository this target wrote, in this process, one request:
    the Python models' model.py under the stub of ``triton_python_backend_utils``, the ONNX models
    with ONNX Runtime, following the ensemble config's steps and tensor maps."""
    from ..runtime import SessionConfig, make_session, run_session
    from . import triton_python_stub as pb

    ensemble = _parse(repo / name / "config.pbtxt")
    tensors: dict[str, np.ndarray] = dict(inputs)
    for step in ensemble.ensemble_scheduling.step:
        folder = repo / step.model_name
        cfg = _parse(folder / "config.pbtxt")
        feed = {key: tensors[tensor] for key, tensor in step.input_map.items()}
        if cfg.backend == "python":
            model = _python_model(folder, cfg, str(version))
            request = pb.InferenceRequest(
                [pb.Tensor(k, v) for k, v in feed.items()],
                requested_output_names=[o.name for o in cfg.output],
            )
            (response,) = model.execute([request])
            model.finalize()
            if response.has_error():
                raise VerificationError(f"{step.model_name}: {response.error().message()}")
            outs = {t.name(): t.as_numpy() for t in response.output_tensors()}
        else:
            session = make_session(folder / str(version) / "model.onnx", SessionConfig())
            names = [o.name for o in cfg.output]
            outs = dict(run_session(session, feed, names))
        for key, tensor in step.output_map.items():
            tensors[tensor] = outs[key]
    return {t.name: tensors[t.name] for t in ensemble.output}
