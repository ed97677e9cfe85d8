"""Hugging Face transformers models from a local directory (never downloads).

Tasks: "feature-extraction" (output ``last_hidden_state``) and "text-classification" (``logits``);
the task is inferred from the config's architectures when not given. Inputs are the tokenizer's
(input_ids, attention_mask and token_type_ids when the model has token types), with dynamic
``batch`` and ``sequence`` dims. Example inputs are real tokenized sentences when a tokenizer is
present; verification also covers sequence lengths 16 and 128 (within the model's maximum).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError, UsageError, require
from ..package import file_sha256
from .base import ConvertConfig, Exported, Source
from .torch import _torch_versions, export_with_fallback, torch_reference

TASKS = {
    "feature-extraction": ("AutoModel", "last_hidden_state"),
    "text-classification": ("AutoModelForSequenceClassification", "logits"),
}

SAMPLE_SENTENCES = [
    "A model package carries its graph, its signature and where it came from.",
    "The quick brown fox jumps over the lazy dog.",
    "Latency matters as much as accuracy when a model serves real traffic.",
    "ONNX Runtime runs the exported graph on the CPU.",
]


def _infer_task(config: Any) -> str:
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "SequenceClassification" in archs:
        return "text-classification"
    return "feature-extraction"


def convert_hf(source: Source, config: ConvertConfig) -> Exported:
    require("torch", "torch")
    transformers = require("transformers", "torch")
    import torch

    path = Path(source.path or "")
    if not (path / "config.json").is_file():
        raise ConversionError(
            f"'{path}' is not a Hugging Face model directory (no config.json); give the directory "
            "that holds config.json and the weights",
            path=str(path),
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        hf_config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise ConversionError(f"cannot read {path / 'config.json'}: {exc}", path=str(path)) from exc
    task = source.task or _infer_task(hf_config)
    if task not in TASKS:
        raise UsageError(f"task '{task}' is not supported; choose one of {sorted(TASKS)}")
    auto_name, output_name = TASKS[task]
    try:
        model = getattr(transformers, auto_name).from_pretrained(
            str(path), local_files_only=True, attn_implementation="eager"
        )
    except Exception as exc:
        raise ConversionError(
            f"cannot load the model in '{path}' for {task}: {exc}", path=str(path)
        ) from exc
    model.eval()
    use_types = int(getattr(hf_config, "type_vocab_size", 0) or 0) > 0
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if use_types else [])

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # noqa: ANN001
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return getattr(self.inner(**kwargs, return_dict=True), output_name)

    wrapper = Wrapper(model).eval()
    import copy

    reference_module = copy.deepcopy(wrapper)
    feed = _example(path, config, input_names, hf_config)
    max_len = int(getattr(hf_config, "max_position_embeddings", 512) or 512)
    vcfg = config.verify
    if "sequence" not in vcfg.dim_sizes:
        vcfg = dataclasses.replace(
            vcfg,
            dim_sizes={**vcfg.dim_sizes, "sequence": tuple(s for s in (16, 128) if s <= max_len)},
        )
    dynamic = {n: {0: "batch", 1: "sequence"} for n in input_names}
    cfg = dataclasses.replace(
        config,
        dynamic={**dynamic, **config.dynamic},
        output_names=config.output_names or (output_name,),
    )
    proto, exporter, _, report, dyn, notes = export_with_fallback(
        wrapper, reference_module, cfg, feed, input_names, verify_config=vcfg
    )
    weights = [f for f in ("model.safetensors", "pytorch_model.bin") if (path / f).is_file()]
    prov = {
        "source_kind": "hf",
        "source_path": str(path),
        "source_sha256": file_sha256(path / weights[0]) if weights else None,
        "frameworks": _torch_versions(),
        "exporter": exporter,
        "task": task,
        "architecture": (getattr(hf_config, "architectures", None) or ["?"])[0],
        "vocab_size": int(getattr(hf_config, "vocab_size", 0) or 0),
        "max_sequence_length": max_len,
    }
    return Exported(
        proto,
        torch_reference(reference_module, input_names),
        feed,
        dyn,
        prov,
        exporter,
        notes,
        verify_config=vcfg,
        report=report,
    )


def _example(
    path: Path, config: ConvertConfig, input_names: list[str], hf_config: Any
) -> dict[str, np.ndarray]:
    if config.example is not None:
        return {k: np.asarray(v).astype(np.int64) for k, v in config.example.items()}
    transformers = require("transformers", "torch")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        enc = tok(
            SAMPLE_SENTENCES[:2],
            padding="max_length",
            truncation=True,
            max_length=16,
            return_tensors="np",
        )
        return {
            n: enc[n].astype(np.int64)
            if n in enc
            else np.zeros_like(enc["input_ids"], dtype=np.int64)
            for n in input_names
        }
    except Exception:  # no tokenizer: random ids in the vocabulary
        rng = np.random.default_rng(0)
        vocab = int(getattr(hf_config, "vocab_size", 1000))
        ids = rng.integers(0, vocab, size=(2, 16)).astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        return feed
