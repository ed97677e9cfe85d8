"""Hugging Face transformers models from a local directory (never downloads).

Tasks: "feature-extraction" (output ``last_hidden_state``), "text-classification" (``logits``)
and "image-classification" (``pixel_values`` -> ``logits``, e.g. ViT); the task is inferred from
the config's architectures when not given. Inputs are the tokenizer's
(input_ids, attention_mask and token_type_ids when the model has token types), with dynamic
``batch`` and ``sequence`` dims. Example inputs are real tokenized sentences when a tokenizer is
present; verification also covers sequence lengths 16 and 128 (within the model's maximum).

Text processing travels in the package when the directory has a fast tokenizer: the tokenizer
(``processing/tokenizer.json``, truncation/padding from the source: sentence-transformers'
``max_seq_length`` when present), plus sentence-transformers' pooling and normalization (from
``modules.json`` / ``1_Pooling/config.json``) for embedding models, or softmax and ``id2label``
labels for classifiers. It is verified text-in -> answer-out against sentence-transformers'
``encode`` (or the source model with the transformers tokenizer); a mismatch fails the conversion.

An image classifier's processing comes from its ``preprocessor_config.json`` (decode, resize,
crop, rescale, normalize: ``processing.image.from_hf_image_processor``) and its ``id2label``
(softmax, top-k labels): a PNG or JPEG in, ``label``/``score`` out, verified image-in -> label-out
against the transformers image processor and the source model on seeded random images.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError, UsageError, require
from ..package import file_sha256
from ..progress import phase
from .base import ConvertConfig, Exported, Source
from .torch import export_with_fallback, torch_reference, torch_versions

TASKS = {
    "feature-extraction": ("AutoModel", "last_hidden_state"),
    "text-classification": ("AutoModelForSequenceClassification", "logits"),
    "image-classification": ("AutoModelForImageClassification", "logits"),
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
    if "ImageClassification" in archs:
        return "image-classification"
    return "feature-extraction"


def _provenance(
    path: Path, hf_config: Any, exporter: str, task: str, **extra: Any
) -> dict[str, Any]:
    """The manifest's provenance of an HF directory: its weights' sha256, the frameworks, the
    exporter, the task and architecture, then ``extra`` (what the task adds)."""
    weights = [f for f in ("model.safetensors", "pytorch_model.bin") if (path / f).is_file()]
    return {
        "source_kind": "hf",
        "source_path": str(path),
        "source_sha256": file_sha256(path / weights[0]) if weights else None,
        "frameworks": torch_versions(),
        "exporter": exporter,
        "task": task,
        "architecture": (getattr(hf_config, "architectures", None) or ["?"])[0],
        **extra,
    }


def convert_hf(source: Source, config: ConvertConfig) -> Exported:
    path = Path(source.path or "")
    if not (path / "config.json").is_file():
        raise ConversionError(
            f"'{path}' is not a Hugging Face model directory (no config.json); give the directory "
            "that holds config.json and the weights",
            path=str(path),
        )
    with phase("load", detail="config"):
        require("torch", "torch")
        transformers = require("transformers", "torch")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            hf_config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:
            raise ConversionError(
                f"cannot read {path / 'config.json'}: {exc}", path=str(path)
            ) from exc
    task = source.task or _infer_task(hf_config)
    if task not in TASKS:
        raise UsageError(f"task '{task}' is not supported; choose one of {sorted(TASKS)}")
    auto_name, output_name = TASKS[task]
    _top_k(config, task, hf_config)  # --top-k on a model without classes: refused before exporting
    if task == "image-classification":
        return _convert_image_classifier(path, hf_config, config)
    import torch

    arch = (getattr(hf_config, "architectures", None) or [""])[0]
    if (
        task == "feature-extraction"
        and arch.endswith("EncoderModel")
        and hasattr(transformers, arch)
    ):
        auto_name = arch  # e.g. T5EncoderModel: AutoModel would build the whole encoder-decoder
    try:
        with phase("load", detail="weights"):
            model = getattr(transformers, auto_name).from_pretrained(
                str(path), local_files_only=True, attn_implementation="eager"
            )
    except Exception as exc:
        raise ConversionError(
            f"cannot load the model in '{path}' for {task}: {exc}", path=str(path)
        ) from exc
    if getattr(model.config, "is_encoder_decoder", False) and "Encoder" not in type(model).__name__:
        raise ConversionError(
            f"'{path}' holds an encoder-decoder model ({type(model).__name__}); --hf converts "
            "encoder models (inputs input_ids/attention_mask). Save its encoder alone (e.g. "
            "T5EncoderModel.from_pretrained(DIR).save_pretrained(ENCODER_DIR)) and convert that, "
            "or convert the part you serve with --torch.",
            path=str(path),
        )
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
    with phase("processing", detail="tokenizer"):
        processing, files, more_notes = _text_processing(
            path,
            hf_config,
            task,
            input_names,
            proto,
            config,
            max_len,
            (torch_reference(copy.deepcopy(reference_module), input_names), input_names),
        )
    notes.extend(more_notes)
    prov = _provenance(
        path,
        hf_config,
        exporter,
        task,
        vocab_size=int(getattr(hf_config, "vocab_size", 0) or 0),
        max_sequence_length=max_len,
    )
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
        processing=processing,
        processing_files=files,
    )


def _class_labels(hf_config: Any) -> list[str]:
    """The classifier's class names from ``id2label`` (``LABEL_i`` where it names none)."""
    id2label = dict(getattr(hf_config, "id2label", None) or {})
    n = int(getattr(hf_config, "num_labels", len(id2label)) or len(id2label))
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]


def _top_k(config: ConvertConfig, task: str, hf_config: Any) -> int:
    """How many classes the package answers (``--top-k``; 1 by default). UsageError when the
    model has no classes to rank (feature extraction without --label-file) or fewer than k."""
    pconf = config.processing
    k = int(pconf.top_k) if pconf is not None else 1
    if k == 1 or (pconf is not None and pconf.labels is not None):
        return k  # the labels file's own check (ProcessingConfig) covers k
    if task not in ("text-classification", "image-classification"):
        raise UsageError(
            f"--top-k {k} needs class labels, and this model (task {task}) has none: it answers "
            "embeddings or hidden states, not classes. Leave --top-k out, give --label-file "
            "for a classifier's output, or --task text-classification for a classifier"
        )
    n = len(_class_labels(hf_config))
    if k > n:
        raise UsageError(
            f"--top-k {k} is more than the model's {n} classes (its config.json's id2label); "
            f"give at most {n}"
        )
    return k


def _tokenizer(path: Path) -> Any:
    """The directory's own tokenizer; raises ConversionError when it holds none of its files.

    transformers 5 builds a tokenizer from config.json alone when the directory has no
    tokenizer files (BERT: an empty vocabulary of 5 special tokens, every word [UNK]); shipping
    or sampling with that one would be wrong, so it counts as no tokenizer.
    """
    transformers = require("transformers", "torch")
    tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    wanted = sorted({str(f) for f in getattr(tok, "vocab_files_names", {}).values()})
    if wanted and not any((path / f).is_file() for f in wanted):
        raise ConversionError(
            f"'{path}' has no tokenizer files ({', '.join(wanted)}); save the tokenizer beside "
            "the model (tokenizer.save_pretrained(DIR))",
            path=str(path),
        )
    return tok


def _example(
    path: Path, config: ConvertConfig, input_names: list[str], hf_config: Any
) -> dict[str, np.ndarray]:
    if config.example is not None:
        return {k: np.asarray(v).astype(np.int64) for k, v in config.example.items()}
    require("transformers", "torch")
    try:
        tok = _tokenizer(path)
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


# --- text processing ------------------------------------------------------------------------

TOKENIZER_FILE = "processing/tokenizer.json"
LABELS_FILE = "processing/labels.txt"
_POOLING = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
_ST_SUPPORTED = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}


def sentence_transformers_config(path: Path) -> dict[str, Any] | None:
    """What sentence-transformers would do after the transformer, read from its config files
    (``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json``); None when the
    directory is not a sentence-transformers model. ``why`` is set when modelport cannot do it."""
    import json

    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text())
        sbert = path / "sentence_bert_config.json"
        max_seq = json.loads(sbert.read_text()).get("max_seq_length") if sbert.is_file() else None
    except (OSError, ValueError) as exc:
        return {"why": f"cannot read the sentence-transformers config: {exc}"}
    out: dict[str, Any] = {"max_seq_length": max_seq, "pooling": None, "normalize": False}
    types = [m.get("type", "?") for m in modules]
    odd = [t for t in types if t not in _ST_SUPPORTED]
    if odd:
        out["why"] = f"sentence-transformers modules {odd} are not supported by modelport"
        return out
    for m in modules:
        if m.get("type") == "sentence_transformers.models.Normalize":
            out["normalize"] = True
        if m.get("type") == "sentence_transformers.models.Pooling":
            try:
                cfg = json.loads((path / m.get("path", "") / "config.json").read_text())
            except (OSError, ValueError) as exc:
                out["why"] = f"cannot read the pooling config: {exc}"
                return out
            modes = [v for k, v in _POOLING.items() if cfg.get(k)]
            others = [
                k
                for k, v in cfg.items()
                if k.startswith("pooling_mode") and v and k not in _POOLING
            ]
            if len(modes) != 1 or others or cfg.get("include_prompt") is False:
                out["why"] = (
                    f"pooling {sorted(k for k, v in cfg.items() if v is True)} is not supported (one of mean, cls, max)"
                )
                return out
            out["pooling"] = modes[0]
    if out["pooling"] is None:
        out["why"] = "the sentence-transformers model has no Pooling module"
    return out


def _text_processing(
    path: Path,
    hf_config: Any,
    task: str,
    input_names: list[str],
    proto: Any,
    config: ConvertConfig,
    max_len: int,
    reference: Any,
) -> tuple[Any, dict[str, bytes], list[str]]:
    """(Processing or None, its files, notes). Raises VerificationError on a mismatch."""
    from ..processing import L2Normalize, Processing, Softmax, Tokenize, TopK
    from ..processing.steps import ClsPool, MaxPool, MeanPool

    require("transformers", "torch")
    try:
        tok = _tokenizer(path)
    except Exception as exc:
        return None, {}, [f"no text processing: the tokenizer cannot be loaded ({exc})"]
    if not getattr(tok, "is_fast", False):
        return None, {}, ["no text processing: the tokenizer has no fast (tokenizers) version"]
    tokenizers = require("tokenizers", "serve")
    backend = tokenizers.Tokenizer.from_str(tok.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    files: dict[str, bytes] = {TOKENIZER_FILE: backend.to_str().encode("utf-8")}
    notes: list[str] = []
    st = sentence_transformers_config(path) if task == "feature-extraction" else None
    limit = min(int(tok.model_max_length or max_len), max_len)
    max_length = int(st["max_seq_length"]) if st and st.get("max_seq_length") else limit
    step = Tokenize(
        file=TOKENIZER_FILE,
        max_length=min(max_length, max_len),
        truncation_side=getattr(tok, "truncation_side", "right"),
        pad_id=int(tok.pad_token_id if tok.pad_token_id is not None else 0),
        pad_type_id=int(getattr(tok, "pad_token_type_id", 0) or 0),
        mask="attention_mask" if "attention_mask" in input_names else None,
        type_ids="token_type_ids" if "token_type_ids" in input_names else None,
    )
    post: tuple[Any, ...] = ()
    outputs: tuple[str, ...] = ()
    if task == "text-classification":
        labels = _class_labels(hf_config)
        files[LABELS_FILE] = "\n".join(labels).encode("utf-8")
        k = _top_k(config, task, hf_config)
        post = (Softmax("logits", "probabilities"), TopK(LABELS_FILE, "probabilities", k=k))
        outputs = ("label", "score")
    elif st is not None and not st.get("why"):
        pool = {"mean": MeanPool, "cls": ClsPool, "max": MaxPool}[st["pooling"]]()
        post = (pool, L2Normalize()) if st["normalize"] else (pool,)
        outputs = ("embedding",)
    elif st is not None:
        notes.append(f"text in, last_hidden_state out: {st['why']}")
    processing = Processing(pre=(step,), post=post, outputs=outputs)
    from ..processing.verify import VERIFY_SENTENCES

    texts = list((config.processing.texts if config.processing else None) or VERIFY_SENTENCES)
    report = _check_text(path, tok, processing, files, proto, texts, step.max_length, reference)
    if not report["passed"] and not config.allow_mismatch:
        from ..errors import VerificationError
        from ..processing.verify import failure_message

        raise VerificationError(
            failure_message(
                "text processing",
                report,
                "Nothing was written; pass --allow-mismatch to write the package anyway.",
            ),
            report=None,
        )
    processing = dataclasses.replace(processing, verification=report)
    return processing, files, notes


def _check_text(
    path: Path,
    tok: Any,
    processing: Any,
    files: dict[str, bytes],
    proto: Any,
    texts: list[str],
    max_length: int,
    reference: Any,
) -> dict[str, Any]:
    """Text in -> answer out, the package's pipeline against the source."""
    from ..processing.verify import compare_embeddings, staged_pipeline
    from ..signature import Signature

    with staged_pipeline(processing, files, proto, Signature.from_onnx(proto)) as pipe:
        ours = pipe(texts)
        if processing.outputs == ("embedding",):
            st = require("sentence_transformers", "torch")
            try:
                model = st.SentenceTransformer(str(path), device="cpu", local_files_only=True)
                ref = model.encode(texts, convert_to_numpy=True, batch_size=32)
            except Exception as exc:
                raise ConversionError(
                    f"sentence-transformers cannot load '{path}' to check the embeddings: {exc}",
                    path=str(path),
                ) from exc
            report = compare_embeddings(ours["embedding"], ref)
            report["reference"] = f"sentence-transformers {st.__version__} encode"
        elif processing.outputs == ("label", "score"):
            labels = files[LABELS_FILE].decode("utf-8").split("\n")
            report = _check_classifier(tok, texts, max_length, ours, reference, labels)
        else:
            enc = tok(texts, truncation=True, max_length=max_length)
            tokens = [list(x) for x in pipe.prepare({"text": texts})["input_ids"]]
            wrong = [
                i for i, (a, b) in enumerate(zip(tokens, enc["input_ids"], strict=True)) if a != b
            ]
            report = {
                "passed": not wrong,
                "rows": len(texts),
                "mismatched_rows": wrong[:10],
                "reference": "transformers tokenizer ids",
            }
    report["texts"] = len(texts)
    return report


def _check_classifier(
    tok: Any,
    texts: list[str],
    max_length: int,
    ours: dict[str, Any],
    reference: tuple[Any, list[str]],
    labels: list[str],
) -> dict[str, Any]:
    """The source model on the transformers tokenizer's padded batch, softmax: the best class
    equal, the k best scores (top-k answers) within 1e-4."""
    from ..processing.verify import compare_labels

    run, input_names = reference
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    feed = {
        n: np.asarray(enc[n] if n in enc else np.zeros_like(enc["input_ids"]), dtype=np.int64)
        for n in input_names
    }
    logits = np.asarray(run(feed)[0], dtype=np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    ours_labels, ours_scores = np.asarray(ours["label"]), np.asarray(ours["score"])
    k = 1 if ours_labels.ndim == 1 else ours_labels.shape[1]
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    ref_scores = np.take_along_axis(probs, best, axis=1)
    ref_labels = [labels[int(i)] for i in best[:, 0]]
    top = ours_labels if k == 1 else ours_labels[:, 0]
    report = compare_labels(top, ref_labels, ours_scores.reshape(len(texts), k), ref_scores)
    report["reference"] = "transformers tokenizer + source model + softmax"
    if report.get("max_abs_score_diff", 0.0) > 1e-4:
        report["passed"] = False
    return report


# --- image classification -------------------------------------------------------------------

IMAGE_CHECK_IMAGES = 12  # seeded random images of several sizes for the image-in -> label check


def _sample_images(n: int, seed: int = 0) -> list[Any]:
    """``n`` RGB PIL images of varied sizes and smooth random content (seeded)."""
    Image = require("PIL.Image", "serve")

    rng = np.random.default_rng(seed)
    sizes = [(48, 64), (96, 80), (33, 41), (128, 128), (70, 200), (224, 224)]
    images = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        coarse = rng.integers(0, 256, size=(max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BILINEAR)  # smooth, not pure noise
        noise = rng.integers(-12, 13, size=(h, w, 3))
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        images.append(Image.fromarray(arr))
    return images


def _convert_image_classifier(path: Path, hf_config: Any, config: ConvertConfig) -> Exported:
    """An HF image classifier (``pixel_values`` -> ``logits``) with its image processing and
    labels; see the module docstring."""
    import copy
    import json

    import torch

    from ..processing.image import from_hf_image_processor

    transformers = require("transformers", "torch")
    pp_file = path / "preprocessor_config.json"
    if not pp_file.is_file():
        raise ConversionError(
            f"'{path}' has no preprocessor_config.json: an image classifier needs its image "
            "processor's settings (resize, crop, normalization) to carry its processing. Save "
            "the processor beside the model (e.g. AutoImageProcessor.from_pretrained(...) or "
            "ViTImageProcessor(size=...).save_pretrained(DIR)), or convert the bare model (pixel "
            "tensors in, logits out) with --torch FACTORY --input "
            "pixel_values:batch,3,HEIGHT,WIDTH:float32",
            path=str(path),
        )
    try:
        with phase("load", detail="image processor and weights"):
            step = from_hf_image_processor(json.loads(pp_file.read_text()), "pixel_values")
            # the PIL-based processor, the one whose resizing our Pillow steps reproduce
            pil = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {}
            processor = transformers.AutoImageProcessor.from_pretrained(
                str(path), local_files_only=True, **(pil or {"use_fast": False})
            )
            model = transformers.AutoModelForImageClassification.from_pretrained(
                str(path), local_files_only=True, attn_implementation="eager"
            )
    except UsageError:
        raise
    except Exception as exc:
        raise ConversionError(
            f"cannot load the image classifier in '{path}': {exc}", path=str(path)
        ) from exc
    model.eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):  # noqa: ANN001
            return self.inner(pixel_values=pixel_values, return_dict=True).logits

    wrapper = Wrapper(model).eval()
    reference_module = copy.deepcopy(wrapper)
    names = ["pixel_values"]
    if config.example is not None:
        feed = {k: np.asarray(v, dtype=np.float32) for k, v in config.example.items()}
    else:
        pixels = processor(images=_sample_images(2), return_tensors="np")["pixel_values"]
        feed = {"pixel_values": np.asarray(pixels, dtype=np.float32)}
    cfg = dataclasses.replace(
        config,
        dynamic={"pixel_values": {0: "batch"}, **config.dynamic},
        output_names=config.output_names or ("logits",),
    )
    proto, exporter, _, report, dyn, notes = export_with_fallback(
        wrapper, reference_module, cfg, feed, names, verify_config=config.verify
    )
    with phase("processing", detail="images"):
        processing, files = _image_processing(
            step,
            hf_config,
            processor,
            proto,
            config,
            torch_reference(copy.deepcopy(reference_module), names),
        )
    prov = _provenance(
        path, hf_config, exporter, "image-classification", image_size=list(step.crop or step.size)
    )
    return Exported(
        proto,
        torch_reference(reference_module, names),
        feed,
        dyn,
        prov,
        exporter,
        notes,
        verify_config=config.verify,
        report=report,
        processing=processing,
        processing_files=files,
    )


def _image_processing(
    step: Any, hf_config: Any, processor: Any, proto: Any, config: ConvertConfig, reference: Any
) -> tuple[Any, dict[str, bytes]]:
    """Image decode + the processor's resize/normalize, softmax, top-k labels from ``id2label``;
    checked image-in -> label-out against the transformers processor + the source model."""
    from ..errors import VerificationError
    from ..processing import Processing, Softmax, TopK
    from ..processing.image import encode_png
    from ..processing.verify import compare_labels, failure_message, staged_pipeline
    from ..signature import Signature

    labels = _class_labels(hf_config)
    files = {LABELS_FILE: "\n".join(labels).encode("utf-8")}
    k = _top_k(config, "image-classification", hf_config)
    processing = Processing(
        pre=(step,),
        post=(Softmax("logits", "probabilities"), TopK(LABELS_FILE, "probabilities", k=k)),
        outputs=("label", "score"),
    )
    images = _sample_images(IMAGE_CHECK_IMAGES, seed=1)
    pngs = [encode_png(np.asarray(img)) for img in images]
    pixels = processor(images=images, return_tensors="np")["pixel_values"]
    logits = np.asarray(reference({"pixel_values": np.asarray(pixels, np.float32)})[0], np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    with staged_pipeline(processing, files, proto, Signature.from_onnx(proto)) as pipe:
        ours = pipe({step.input: pngs})
    top_label = ours["label"] if k == 1 else ours["label"][:, 0]
    top_score = ours["score"] if k == 1 else ours["score"][:, 0]
    report = compare_labels(
        top_label, [labels[int(i)] for i in probs.argmax(axis=1)], top_score, probs.max(axis=1)
    )
    report["images"] = len(pngs)
    report["reference"] = "transformers image processor (PIL) + source model + softmax"
    if report.get("max_abs_score_diff", 0.0) > 1e-4:
        report["passed"] = False
    if not report["passed"] and not config.allow_mismatch:
        raise VerificationError(
            failure_message(
                "image processing",
                report,
                "Nothing was written; pass --allow-mismatch to write the package anyway.",
            ),
            report=None,
        )
    return dataclasses.replace(processing, verification=report), files
