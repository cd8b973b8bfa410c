"""`zhtw-pretrain train`: QLoRA continued pretraining of a prepared model with trainable new-token rows and S²-Attn.

Reads top to bottom: parse the config, (``--dry-run``: estimate memory and exit), check the tokenizer
against the prepared model, pack the data, load the base (NF4 or full precision), wrap it with LoRA and
trainable token rows, switch on S²-Attn, train with transformers' Trainer (chunked loss), then save the
final adapter, ``loss.png`` and ``training_summary.json`` for the export stage.

Output directory (see README_TRAIN.md)::

    OUTPUT_DIR/
      checkpoint-N/            adapter + trained rows + optimizer/scheduler/RNG state (resumable)
      adapter/                 the final adapter (adapter_config.json, adapter_model.safetensors)
      tensorboard/             TensorBoard event files
      loss.png                 training and evaluation loss against step
      training_summary.json    what the export stage reads (written last)
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import glob
import io
import json
import math
import os
import platform
import re
import sys
import time
import zipfile
from collections.abc import Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import atomic_write_bytes, atomic_write_json, check_disjoint, output_lock, show_path
from zhtw.pretrain.memory import (
    PARAMETER_DEFINITION,
    MemoryEstimate,
    estimate_memory,
    fits,
    fitting_changes,
    lever_effects,
    model_shape,
    render_estimate,
    render_fitting_changes,
    render_levers,
)
from zhtw.pretrain.prepare import (
    ADAPTER_RECORD,
    check_replaceable,
    clear_output,
    os_error_message,
    output_entries,
    prepared_identity,
)
from zhtw.pretrain.train_config import ConfigError, TrainConfig, build_parser, load_config
from zhtw.pretrain.train_summary import SUMMARY_FILE, SUMMARY_FORMAT, TrainSummary

__all__ = [
    "SUMMARY_FILE",
    "SUMMARY_FORMAT",
    "TokenizerMismatchError",
    "TrainError",
    "check_tokenizer",
    "dry_run",
    "estimate_for_config",
    "main",
    "train",
]

ADAPTER_DIR = "adapter"
TENSORBOARD_DIR = "tensorboard"
LOSS_PLOT = "loss.png"
COMMAND = "zhtw-pretrain train"
# what a training run writes: an older run's directory (no ownership marker) holding only these may be replaced
_LEGACY_OUTPUT = (
    "checkpoint-*",
    ADAPTER_DIR,
    TENSORBOARD_DIR,
    LOSS_PLOT,
    SUMMARY_FILE,
    f".{SUMMARY_FILE}*",
    "runs",
)


class TrainError(RuntimeError, ZhtwError):
    """Training cannot start or continue; the message says what to do."""


class TokenizerMismatchError(TrainError):
    """The tokenizer does not belong to the prepared model's embeddings."""


# --------------------------------------------------------------------------------------------------------------
# prepared model metadata and the tokenizer check


def _prepare_metadata(model_path: str) -> dict[str, Any]:
    from zhtw.pretrain.prepare import NotPreparedError, load_prepare_metadata

    try:
        return load_prepare_metadata(model_path)
    except NotPreparedError as exc:
        raise TrainError(str(exc)) from exc


def _model_config(model_path: str) -> dict[str, Any]:
    path = Path(model_path) / "config.json"
    if not path.is_file():
        raise TrainError(
            f"{model_path} has no config.json; model_path must be the directory written by `zhtw-pretrain prepare`."
        )
    return json.loads(path.read_text(encoding="utf-8"))


def check_tokenizer(model_path: str, tokenizer_path: str | None = None) -> dict[str, Any]:
    """Refuse a tokenizer that does not match the prepared model's embedding rows; return zhtw_prepare.json.

    Checks the tokenizer length against the rows the prepare stage sized for it and against
    ``config.vocab_size``, and ``tokenizer.model`` against the hash recorded by the prepare stage.
    """
    from zhtw.pretrain.data import load_tokenizer
    from zhtw.pretrain.prepare import sha256_file

    meta = _prepare_metadata(model_path)
    rows = int(_model_config(model_path)["vocab_size"])
    tok_dir = tokenizer_path or model_path
    tok = load_tokenizer(tok_dir)
    n = len(tok)
    rerun = (
        f"Rerun `zhtw-pretrain prepare --base {meta.get('base_model', 'BASE_MODEL')} --tokenizer TOKENIZER_DIR "
        f"--output {model_path} --overwrite` with the tokenizer you want to train with (the prepare stage sizes "
        "the embeddings for it), or set tokenizer_path to the tokenizer the model was prepared with "
        f"({meta.get('tokenizer_dir', 'see zhtw_prepare.json')})."
    )
    if n != int(meta["tokenizer_size"]) or n > rows:
        raise TokenizerMismatchError(
            f"tokenizer size mismatch: the tokenizer in {tok_dir} has {n} pieces, but the prepared model in "
            f"{model_path} was sized for {meta['tokenizer_size']} pieces ({rows} embedding rows). {rerun}"
        )
    sp = Path(tok_dir) / "tokenizer.model"
    if sp.is_file() and meta.get("tokenizer_sha256") and sha256_file(sp) != meta["tokenizer_sha256"]:
        raise TokenizerMismatchError(
            f"tokenizer mismatch: {sp} is not the tokenizer.model the prepared model in {model_path} was "
            f"initialised for (SHA-256 differs from zhtw_prepare.json). {rerun}"
        )
    recorded = (meta.get("files") or {}).get("tokenizer.json")
    fast = Path(tok_dir) / "tokenizer.json"
    if recorded and fast.is_file() and sha256_file(fast) != recorded:
        raise TokenizerMismatchError(
            f"tokenizer mismatch: {fast} is not the tokenizer.json prepare copied beside the model in {model_path} "
            f"(SHA-256 differs from zhtw_prepare.json; edited after prepare?). {rerun}"
        )
    return meta


def _weight_names(model_path: str) -> list[str]:
    """Tensor names of the prepared model's safetensors (headers only, no weights read)."""
    from safetensors import safe_open

    names: list[str] = []
    for path in sorted(Path(model_path).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as f:
                names += list(f.keys())  # noqa: SIM118 (safe_open API)
        except Exception as exc:  # safetensors raises its own error type for a damaged file
            raise TrainError(
                f"{show_path(path)} is not a readable safetensors file ({exc}); rerun `zhtw-pretrain prepare "
                f"--output {model_path} --overwrite`."
            ) from exc
    return names


def check_lora_targets(model_path: str, targets: list[str]) -> None:
    """Refuse a LoRA target that names no linear layer of the model (peft would skip it or fail deep inside).

    A target matches a module whose name is the target or ends in `.target`, as in peft; the message lists
    the module names that exist.
    """
    names = _weight_names(model_path)  # also refuses a damaged safetensors file before any work
    if any(t in ("all-linear", "all_linear") for t in targets):
        return
    linear = sorted({n.removesuffix(".weight") for n in names if re.search(r"\.layers\.\d+\.", n)})
    short = sorted({n.rsplit(".", 1)[-1] for n in linear if not n.endswith("norm")})
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linear)]
    if missing:
        raise TrainError(
            f"lora_target_modules {missing} match no layer of {model_path}; its linear layers are "
            f"{', '.join(short)} (or use all-linear)."
        )


# --------------------------------------------------------------------------------------------------------------
# output directory and checkpoints


def _checkpoint_step(path: Path) -> int:
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m else -1


def _checkpoint_problem(ckpt: Path) -> str | None:
    """Why `ckpt` cannot be resumed (a missing, truncated or unreadable file), or None when it is complete."""
    from safetensors import safe_open

    for name in ("trainer_state.json", "adapter_config.json"):
        try:
            json.loads((ckpt / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"{name}: {exc}"
    try:
        with safe_open(str(ckpt / "adapter_model.safetensors"), "pt"):
            pass
    except Exception as exc:  # SafetensorError for a truncated file
        return f"adapter_model.safetensors: {exc}"
    for state in sorted(ckpt.glob("*.pt")) + sorted(ckpt.glob("*.pth")):
        try:
            with zipfile.ZipFile(state) as z:  # torch.save writes a zip archive with CRCs
                bad = z.testzip()
        except (OSError, zipfile.BadZipFile) as exc:
            return f"{state.name}: {exc}"
        if bad is not None:
            return f"{state.name}: member {bad} fails its CRC"
    return None


def check_checkpoint(ckpt: Path, meta: dict[str, Any]) -> None:
    """Refuse a checkpoint of another prepared model, or a damaged one (naming the latest complete one before it)."""
    try:
        trained_on = json.loads((ckpt / ADAPTER_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        trained_on = None  # a checkpoint from before the record (or a damaged record): nothing to compare
    if isinstance(trained_on, dict) and trained_on.get("prepared_model_identity") != prepared_identity(meta):
        raise TrainError(
            f"checkpoint {show_path(ckpt)} was trained on the prepared model {trained_on.get('prepared_model')}, "
            "not on this model_path (other weights or tokenizer); resume with the model_path it was trained on."
        )
    problem = _checkpoint_problem(ckpt)
    if problem is None:
        return
    step = _checkpoint_step(ckpt)
    earlier = sorted(
        (c for c in ckpt.parent.glob("checkpoint-*") if c.is_dir() and -1 < _checkpoint_step(c) < step),
        key=_checkpoint_step,
        reverse=True,
    )
    good = next((c for c in earlier if _checkpoint_problem(c) is None), None)
    fix = (
        f"the previous complete checkpoint is {show_path(good)}: resume from it with "
        f"--resume_from_checkpoint {show_path(good)}"
        if good
        else "no earlier complete checkpoint exists: start over with --overwrite"
    )
    raise TrainError(f"checkpoint {show_path(ckpt)} is damaged or incomplete ({problem}); {fix}.")


def _describe_run(entries: list[Path]) -> str:
    names = [e.name for e in entries]
    checkpoints = sorted(
        (n for n in names if n.startswith("checkpoint-")), key=lambda n: _checkpoint_step(Path(n))
    )
    if SUMMARY_FILE in names and _summary_status(entries[0].parent / SUMMARY_FILE) == "finished":
        return f"a finished run ({SUMMARY_FILE}, {ADAPTER_DIR}/)"
    if checkpoints:
        return f"an unfinished run ({', '.join(checkpoints[-3:])})"
    return f"other files ({', '.join(show_path(n) for n in names[:3])})"


def _summary_status(path: Path) -> str:
    """The summary's status: finished, training (refreshed at a save, the run did not end) or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable"
    return str(data.get("status", "finished")) if isinstance(data, dict) else "unreadable"


def check_train_output(out: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse an output_dir that holds an earlier run unless the run continues it (resume) or replaces it
    (--overwrite, and only a directory zhtw-pretrain train wrote)."""
    entries = output_entries(out)
    if not entries:
        return
    if resume is not None and Path(resume).resolve().parent == out.resolve():
        return  # continuing this run: its checkpoints, summary and adapter are meant to be updated
    if not overwrite:
        raise TrainError(
            f"output_dir {show_path(out)} already holds {_describe_run(entries)}; continue it with "
            "--resume_from_checkpoint last, replace it with --overwrite, or choose another output_dir."
        )
    check_replaceable(out, command=COMMAND, legacy=_LEGACY_OUTPUT)


def _inputs(config: TrainConfig) -> list[str]:
    """Paths the run reads: the prepared model, the tokenizer and the data (globs expanded)."""
    paths = [config.model.model_path, *([config.model.tokenizer_path] if config.model.tokenizer_path else [])]
    for given in config.data.data_files:
        paths += glob.glob(given) if glob.has_magic(given) else [given]
    return paths


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


_WRITE_FAILURES = ("No space left", "file write failed", "File too large", "FileTooLarge", "Disk quota")


def _write_failure(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a failed write: torch and safetensors wrap ENOSPC in their own types."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        if any(s in str(seen) for s in _WRITE_FAILURES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _last_complete_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((c for c in out.glob("checkpoint-*") if c.is_dir()), key=_checkpoint_step, reverse=True)
    return next((c for c in ckpts if _checkpoint_problem(c) is None), None)


def _disk_full_error(out: Path, exc: BaseException) -> TrainError:
    good = _last_complete_checkpoint(out)
    resume = (
        f"then continue from {show_path(good)} with --resume_from_checkpoint {show_path(good)}"
        if good
        else "then rerun with --overwrite (no complete checkpoint was saved)"
    )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TrainError(
        f"writing into {show_path(out)} failed: the disk is full or a size limit was hit ({first[:200]}); "
        f"free space (or choose another output_dir), {resume}."
    )


# --------------------------------------------------------------------------------------------------------------
# dry run


def estimate_for_config(config: TrainConfig, *, block_size: int | None = None) -> MemoryEstimate:
    """The memory estimate of a config, from config.json alone (no model is built, no weights are read)."""
    return estimate_memory(**_estimate_arguments(config, block_size=block_size))


def _shape_and_new_rows(config: TrainConfig) -> tuple[dict[str, Any], int]:
    """The model config.json (vocab_size = the embedding rows training will see) and the number of new rows.

    A prepared model records its new token ids in zhtw_prepare.json. A base model (a directory or its
    config.json file) needs the extended tokenizer (`--tokenizer DIR`): its zhtw_tokenizer.json gives the
    new size and the base size, and the rows are padded as `zhtw-pretrain prepare` pads them.
    """
    from zhtw.pretrain.prepare import rows_for

    given = Path(config.model.model_path)
    cfg_path = given if given.is_file() else given / "config.json"
    cfg = _read_json(
        cfg_path, "model_path must be a prepared model, a base model directory or its config.json"
    )
    prepared = given / "zhtw_prepare.json"
    if given.is_dir() and prepared.is_file():
        first, last = _read_json(prepared, "rerun `zhtw-pretrain prepare`")["new_token_ids"]
        return cfg, int(last) - int(first)
    tok_meta = _tokenizer_meta(config, cfg_path)
    size, base = int(tok_meta["vocab_size"]), int(tok_meta["base_vocab_size"])
    if base > int(cfg["vocab_size"]):
        raise TrainError(
            f"the tokenizer in {config.model.tokenizer_path} extends a base of {base:,} tokens, but "
            f"{show_path(cfg_path)} has {int(cfg['vocab_size']):,} embedding rows: the tokenizer was not built "
            "on this base; pass the base it was built on."
        )
    return {**cfg, "vocab_size": rows_for(size, 64)}, size - base


def _tokenizer_meta(config: TrainConfig, cfg_path: Path) -> dict[str, Any]:
    """zhtw_tokenizer.json of `--tokenizer`, required to plan a run on a base model that is not prepared yet."""
    tok = config.model.tokenizer_path
    meta_path = Path(tok) / "zhtw_tokenizer.json" if tok else None
    if meta_path is None or not meta_path.is_file():
        raise TrainError(
            f"{show_path(cfg_path)} belongs to a model that `zhtw-pretrain prepare` has not prepared (no "
            "zhtw_prepare.json beside it), so the new embedding rows cannot be counted; give the extended "
            "tokenizer with --tokenizer DIR (the `zhtw-tok build` output), or point model_path at the prepared model."
        )
    meta = _read_json(meta_path, "rebuild the tokenizer with `zhtw-tok build ... --overwrite`")
    if not all(isinstance(meta.get(k), int) for k in ("vocab_size", "base_vocab_size")):
        raise TrainError(
            f"{show_path(meta_path)} has no integer vocab_size and base_vocab_size; rebuild the tokenizer with "
            "`zhtw-tok build ... --overwrite`."
        )
    return meta


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    """A JSON object from `path`, or a TrainError naming the file and `fix`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainError(f"{show_path(path)} not found; {fix}.") from None
    except (OSError, ValueError) as exc:
        raise TrainError(f"{show_path(path)} is not readable JSON ({exc}); {fix}.") from None
    if not isinstance(data, dict):
        raise TrainError(f"{show_path(path)} does not hold a JSON object; {fix}.")
    return data


def _estimate_arguments(config: TrainConfig, *, block_size: int | None = None) -> dict[str, Any]:
    """`estimate_memory`'s arguments for a config (the shape from config.json, the new rows as above)."""
    m, t = config.model, config.training
    cfg, new_rows = _shape_and_new_rows(config)
    return dict(
        shape=model_shape(cfg),
        block_size=block_size or config.data.block_size,
        micro_batch=t.per_device_train_batch_size,
        quantization=m.quantization,
        double_quant=m.double_quant,
        compute_dtype=m.compute_dtype,
        lora_r=config.lora.lora_r,
        lora_target_modules=config.lora.lora_target_modules,
        lora_dropout=config.lora.lora_dropout,
        trainable_embeddings=m.trainable_embeddings,
        new_rows=new_rows,
        trainable_norms=m.trainable_norms,
        gradient_checkpointing=bool(t.activation_checkpointing),
        loss_chunk_tokens=m.loss_chunk_tokens,
        trainable_rows_impl=m.trainable_rows_impl,
        offload_activations=m.offload_activations,
        lora_optimizer_states=m.lora_optimizer_states,
    )


def dry_run(config: TrainConfig) -> str:
    """The `--dry-run` report: parameter counts and estimated peak GPU memory for the config, the memory levers,
    and, when the estimate does not fit the card, the option changes that would."""
    kwargs = _estimate_arguments(config)
    shape = kwargs.pop("shape")
    est = estimate_memory(shape, **kwargs)
    t, gpu = config.training, config.run.gpu_memory_gb
    title = (
        f"dry run: {config.model.model_path} | {config.model.quantization}, LoRA r={config.lora.lora_r}, "
        f"embeddings={config.model.trainable_embeddings} ({kwargs['new_rows']:,} new rows), block "
        f"{config.data.block_size} x micro batch {t.per_device_train_batch_size} x accumulation "
        f"{t.gradient_accumulation_steps}, checkpointing {'on' if t.activation_checkpointing else 'off'}, "
        f"S²-Attn {'on' if config.s2.s2attn else 'off'}"
    )
    parts = [render_estimate(est, gpu_memory_gb=gpu, title=title), f"({PARAMETER_DEFINITION})"]
    if config.model.trainable_embeddings == "new_rows":  # the levers are modelled for the new-rows recipe
        parts.append(render_levers(lever_effects(shape, **kwargs)))
    if not fits(est.peak_gib, gpu):
        found = fitting_changes(shape, kwargs, gpu_memory_gb=gpu, accumulation=t.gradient_accumulation_steps)
        parts.append(render_fitting_changes(found, gpu))
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------------------
# model


def _compute_dtype(config: TrainConfig, on_cpu: bool) -> Any:
    import torch

    if on_cpu:
        return torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[
        config.model.compute_dtype
    ]


def _quantization_plan(
    config: TrainConfig, on_cpu: bool, model_cfg: dict[str, Any]
) -> tuple[str, str | None]:
    """("nf4" | "none", a note when the requested quantization was changed)."""
    if config.model.quantization == "none":
        return "none", None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise TrainError(
            "quantization: nf4 needs bitsandbytes: `pip install 'bitsandbytes>=0.45'` (or set quantization: none)."
        ) from exc
    if on_cpu and not config.run.allow_cpu_4bit:
        return "none", "nf4 on CPU disabled by allow_cpu_4bit=false: training LoRA on a full-precision base"
    if on_cpu:
        sizes = {
            "intermediate_size": int(model_cfg["intermediate_size"]),
            "hidden_size": int(model_cfg["hidden_size"]),
        }
        odd = {k: v for k, v in sizes.items() if v % 32}
        if odd:
            return "none", (
                f"bitsandbytes' CPU 4-bit kernels need layer widths divisible by 32, this model has {odd}: "
                "training LoRA on a full-precision base instead (set quantization: none to silence this)"
            )
    return "nf4", None


def load_base_model(config: TrainConfig, quantization: str, on_cpu: bool) -> Any:
    """Load the prepared model, NF4-quantised or in full precision; trainable embedding matrices in float32."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = _compute_dtype(config, on_cpu)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": "sdpa"}
    if quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=config.model.double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
        if not on_cpu:
            kwargs["device_map"] = {"": _local_device()}
    model = AutoModelForCausalLM.from_pretrained(config.model.model_path, **kwargs)
    if quantization == "nf4":
        from bitsandbytes.nn import Linear4bit

        for module in model.modules():
            if isinstance(module, Linear4bit):
                # repacking for AVX512-BF16 during no-grad eval corrupts later backward passes (GUIDE §3)
                module.support_avx512bf16_for_cpu = False
    if _rows_in_matrices(config):
        # bf16 rows would round lr-5e-5 updates away; trainable rows live in these matrices
        model.get_input_embeddings().to(torch.float32)
        model.get_output_embeddings().to(torch.float32)
    model.config.use_cache = False
    return model


def _rows_in_matrices(config: TrainConfig) -> bool:
    """Whether trained rows live inside the embedding matrices (so these must be float32): full matrices or
    peft's row layer; the gather path keeps its rows in a float32 parameter of their own."""
    m = config.model
    return m.trainable_embeddings == "full" or (
        m.trainable_embeddings == "new_rows" and m.trainable_rows_impl == "peft"
    )


def _local_device() -> Any:
    import torch

    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def peft_config(config: TrainConfig, meta: dict[str, Any], tied: bool) -> Any:
    """The LoraConfig for the chosen LoRA targets, trainable embeddings and norms."""
    from peft import LoraConfig

    lora, m = config.lora, config.model
    targets: Any = lora.lora_target_modules
    if any(t in ("all-linear", "all_linear") for t in targets):
        targets = "all-linear"
    modules_to_save: list[str] = []
    kwargs: dict[str, Any] = {}
    if m.trainable_embeddings == "new_rows":
        first, last = meta["new_token_ids"]
        ids = list(range(int(first), int(last)))
        if not ids:
            raise TrainError(
                f"trainable_embeddings: new_rows, but {m.model_path} has no new tokens "
                "(zhtw_prepare.json new_token_ids is empty); use trainable_embeddings: none."
            )
        # a list trains the input rows and peft ties the head to them; untied models need both named
        kwargs["trainable_token_indices"] = ids if tied else {"embed_tokens": ids, "lm_head": ids}
    elif m.trainable_embeddings == "full":
        modules_to_save += ["embed_tokens", "lm_head"]
        if tied:
            kwargs["ensure_weight_tying"] = True
    if m.trainable_norms:
        modules_to_save += ["input_layernorm", "post_attention_layernorm", "norm"]
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=targets,
        modules_to_save=modules_to_save or None,
        **kwargs,
    )


def build_model(config: TrainConfig, meta: dict[str, Any], quantization: str, on_cpu: bool) -> Any:
    """Base model + LoRA + trainable rows (+ S²-Attn), ready for the Trainer."""
    from peft import get_peft_model

    model = load_base_model(config, quantization, on_cpu)
    tied = bool(model.config.tie_word_embeddings)
    model = get_peft_model(model, peft_config(config, meta, tied))
    if config.model.trainable_embeddings == "new_rows" and config.model.trainable_rows_impl == "gather":
        from zhtw.pretrain.new_rows import use_row_gather

        use_row_gather(model)  # same parameters and adapter files, no vocabulary-sized temporaries
    if config.s2.s2attn:
        from zhtw.pretrain.s2attn import enable_s2_attention

        enable_s2_attention(model, group_ratio=config.s2.s2attn_ratio, variant=config.s2.s2attn_variant)
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) by `PARAMETER_DEFINITION`, the definition --dry-run's estimate uses.

    peft keeps a frozen original beside each `modules_to_save` copy and the trained rows in a delta beside
    the frozen matrix; each weight is counted once (the trained copy, the matrix), 4-bit weights unpacked.
    """
    trainable, total = 0, 0
    for name, p in model.named_parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            state = getattr(p, "quant_state", None)
            n = int(math.prod(state.shape)) if state is not None else 2 * n
        if p.requires_grad:
            trainable += n
        if ".original_module." not in name and "trainable_tokens_delta" not in name:
            total += n
    return trainable, total


# --------------------------------------------------------------------------------------------------------------
# trainer


def _trainer_classes() -> tuple[type, type, type, Any]:
    """The Trainer subclass and callbacks (defined lazily so --help and --dry-run need no torch)."""
    import torch
    from transformers import Trainer, TrainerCallback

    from zhtw.pretrain.loss import chunked_causal_lm_loss, liger_fused_available

    class ZhtwTrainer(Trainer):
        """Trainer whose loss runs the decoder, then the output head chunk by chunk (no full fp32 logits)."""

        loss_is_scaled_for_ga = False  # compute_loss returns the mean over the micro batch

        def __init__(
            self,
            *args: Any,
            loss_chunk_tokens: int = 1024,
            fused_loss: bool = True,
            offload_activations: bool = False,
            bf16_lora_states: bool = False,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.offload_activations = offload_activations
            self.bf16_lora_states = bf16_lora_states
            self.loss_chunk_tokens = loss_chunk_tokens
            self.model_accepts_loss_kwargs = False
            self.fused = None
            head = self.model.get_output_embeddings()
            if fused_loss and liger_fused_available() and type(head) is torch.nn.Linear:
                from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

                self.fused = LigerFusedLinearCrossEntropyLoss()

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            labels = inputs["labels"]
            # through the (possibly DDP-wrapped) model, so gradient synchronisation sees the forward;
            # logits only for the last position, the loss below projects the hidden states in chunks
            with _activation_offload(self.offload_activations and model.training):
                outputs = model(
                    input_ids=inputs["input_ids"],
                    output_hidden_states=True,
                    logits_to_keep=1,
                    use_cache=False,
                )
            hidden = outputs.hidden_states[-1]
            head = self.accelerator.unwrap_model(model).get_output_embeddings()
            if self.fused is not None and model.training:  # liger: plain head only (no trainable rows)
                targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100).reshape(-1)
                loss = self.fused(head.weight, hidden.reshape(-1, hidden.shape[-1]), targets)
            else:
                loss = chunked_causal_lm_loss(hidden, head, labels, chunk_tokens=self.loss_chunk_tokens)
            return (loss, {"loss": loss}) if return_outputs else loss

        def create_optimizer(self, model: Any = None) -> Any:
            if not self.bf16_lora_states or self.optimizer is not None:
                return super().create_optimizer(model)
            from zhtw.pretrain.new_rows import AdamWBF16States

            opt_model = model or self.model
            decay = set(self.get_decay_parameter_names(opt_model))
            a = self.args
            groups: dict[tuple[bool, float], list[Any]] = {}
            for n, p in opt_model.named_parameters():
                if p.requires_grad:  # bf16 states for LoRA matrices only; the Trainer's weight-decay split
                    groups.setdefault(("lora_" in n, a.weight_decay if n in decay else 0.0), []).append(p)
            self.optimizer = AdamWBF16States(
                [{"params": ps, "bf16_states": low, "weight_decay": wd} for (low, wd), ps in groups.items()],
                lr=a.learning_rate,
                betas=(a.adam_beta1, a.adam_beta2),
                eps=a.adam_epsilon,
            )
            return self.optimizer

    class StopAtLossCallback(TrainerCallback):
        """Stop (and save) when the logged training loss reaches a threshold."""

        def __init__(self, threshold: float) -> None:
            self.threshold = threshold

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
        ) -> None:
            if logs and "loss" in logs and logs["loss"] <= self.threshold:
                print(
                    f"stop_at_loss: training loss {logs['loss']:.4f} <= {self.threshold}; stopping",
                    flush=True,
                )
                control.should_training_stop = True
                control.should_save = True

    class RecordPreparedModelCallback(TrainerCallback):
        """Write zhtw_adapter.json into every checkpoint, so an export of any checkpoint can check its base."""

        def __init__(self, record: dict[str, Any]) -> None:
            self.record = record

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and ckpt.is_dir():
                atomic_write_json(ckpt / ADAPTER_RECORD, self.record)

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
        return {"input_ids": ids, "labels": ids}

    return ZhtwTrainer, StopAtLossCallback, RecordPreparedModelCallback, collate


def _activation_offload(enabled: bool) -> Any:
    """`offloaded_activations` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    from zhtw.pretrain.new_rows import offloaded_activations

    return offloaded_activations()


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration of the block."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _checksum(model: Any) -> float:
    return float(sum(p.detach().double().sum().item() for p in model.parameters() if p.requires_grad))


def _resume_path(resume: str | None, output_dir: str) -> str | None:
    if not resume or resume.lower() in ("false", "no", "none"):
        return None
    if resume.lower() in ("true", "last", "auto"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None and resume.lower() != "auto":
            raise TrainError(
                f"resume_from_checkpoint={resume}, but {output_dir} holds no checkpoint-N directory."
            )
        return last
    if not Path(resume).is_dir():
        raise TrainError(
            f"resume_from_checkpoint {resume} is not a directory; pass a checkpoint-N directory or 'last'."
        )
    return resume


def _report_to(requested: list[str] | str | None) -> list[str]:
    wanted = [requested] if isinstance(requested, str) else list(requested or [])
    if "tensorboard" in wanted:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            print(
                "warning: TensorBoard logging is off because tensorboard is not installed "
                "(`pip install tensorboard`); losses still go to the console, loss.png and training_summary.json.",
                file=sys.stderr,
            )
            wanted.remove("tensorboard")
    # assigned after TrainingArguments.__post_init__, which is what turns "none" into []
    return [w for w in wanted if w != "none"]


def train(config: TrainConfig) -> dict[str, Any]:
    """Run the training described by ``config``; return the summary written to training_summary.json.

    Everything that can be checked without training is checked first (tokenizer, LoRA targets, the
    checkpoint to resume, the output directory), so a mistake costs seconds, not a run.
    """
    import torch

    args = config.training
    out = Path(args.output_dir)
    if config.data.streaming and args.max_steps <= 0:
        raise TrainError(
            "streaming: true has no dataset length to count epochs by; set max_steps (e.g. --max_steps 10000)."
        )
    meta = check_tokenizer(config.model.model_path, config.model.tokenizer_path)
    check_lora_targets(config.model.model_path, config.lora.lora_target_modules)
    check_disjoint(out, _inputs(config), what="output_dir")
    resume = _resume_path(args.resume_from_checkpoint, args.output_dir)
    if resume is not None:
        check_checkpoint(Path(resume), meta)
    check_train_output(out, resume, config.run.overwrite)
    on_cpu = bool(args.use_cpu) or not torch.cuda.is_available()
    lock = output_lock(out, command=COMMAND) if _is_main_process() else contextlib.nullcontext()
    with lock:
        if config.run.overwrite and _is_main_process():
            clear_output(out, command=COMMAND)
        try:
            return _run(config, meta, resume, on_cpu)
        except Exception as exc:
            if _write_failure(exc):
                raise _disk_full_error(out, exc) from exc
            raise


def _run(config: TrainConfig, meta: dict[str, Any], resume: str | None, on_cpu: bool) -> dict[str, Any]:
    """Pack the data, build the model and train; save adapter, loss plot and summary (rank 0)."""
    from transformers import set_seed

    from zhtw.pretrain.data import build_packed_data, load_tokenizer

    started = time.time()
    args = config.training
    out = Path(args.output_dir)
    model_cfg = _model_config(config.model.model_path)

    # Trainer settings this pipeline relies on
    args.remove_unused_columns = False
    args.prediction_loss_only = True
    args.report_to = _report_to(args.report_to)
    if args.activation_checkpointing and not args.activation_checkpointing_kwargs:
        args.activation_checkpointing_kwargs = {"use_reentrant": False}
        args.gradient_checkpointing_kwargs = args.activation_checkpointing_kwargs

    with args.main_process_first(desc="tokenise and pack"):
        data = build_packed_data(
            config.data.data_files,
            config.model.tokenizer_path or config.model.model_path,
            config.data.block_size,
            cache_dir=config.data.data_cache_dir or str(out.parent / "data_cache"),
            eval_fraction=config.data.eval_fraction,
            eval_max_docs=config.data.eval_max_docs,
            seed=args.seed,
            streaming=config.data.streaming,
            text_key=config.data.text_key,
            num_proc=config.data.tokenize_num_proc,
            weights=config.data.data_weights,
        )
    eval_note = None
    if data.eval is None:
        eval_note = no_eval_reason(data.stats, config)
        if args.eval_strategy != "no":
            print(f"note: no evaluation split: {eval_note}; evaluation is off.", file=sys.stderr)
        args.eval_strategy = "no"
        args.eval_on_start = False
    elif args.eval_strategy != "no" and resume is None:
        args.eval_on_start = True  # the first logged evaluation is truly "before training" (step 0)

    texts = _held_out_texts(config)
    quantization, note = _quantization_plan(config, on_cpu, model_cfg)
    if note:
        print(f"note: {note}.", file=sys.stderr)
    set_seed(args.seed)  # LoRA initialisation is random
    model = build_model(config, meta, quantization, on_cpu)
    tok_dir = config.model.tokenizer_path or config.model.model_path
    bpc: dict[str, Any] = {}
    if texts and _is_main_process():
        bpc["prepared_step0"] = (
            _bits_per_char(model, load_tokenizer(tok_dir), texts, config.data.block_size)
            if resume is None
            else {"not_measured": "resumed run: step 0 is in the summary of the run that started it"}
        )
    trainable, total = count_parameters(model)

    record = _adapter_record(config, meta)
    ZhtwTrainer, StopAtLoss, RecordCallback, collate = _trainer_classes()
    callbacks = [RecordCallback(record)]
    if config.run.stop_at_loss is not None:
        callbacks.append(StopAtLoss(config.run.stop_at_loss))
    tb_dir = os.environ.get("TENSORBOARD_LOGGING_DIR") or str(out / TENSORBOARD_DIR)
    with _env("TENSORBOARD_LOGGING_DIR", tb_dir):  # TensorBoardCallback's documented setting, read at init
        trainer = ZhtwTrainer(
            model=model,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            data_collator=collate,
            callbacks=callbacks,
            loss_chunk_tokens=config.model.loss_chunk_tokens,
            fused_loss=config.model.use_fused_loss,
            offload_activations=config.model.offload_activations,
            bf16_lora_states=config.model.lora_optimizer_states == "bfloat16",
        )
    run = _RunRecord(config, meta, data.stats, quantization, note, (trainable, total), started, Path(tb_dir))
    run.eval_note = eval_note
    _use_console(trainer, run)
    if _is_main_process() and not config.run.quiet:
        print(plan_block(config, trainer, run, resume), flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    eval_metrics = _final_evaluation(trainer) if data.eval is not None else {}
    if trainer.args.world_size > 1:  # data parallel ranks must end with identical weights
        print(f"rank {trainer.args.process_index}: trainable checksum {_checksum(model):.10e}", flush=True)

    summary: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        trainer.save_model(str(out / ADAPTER_DIR))
        atomic_write_json(out / ADAPTER_DIR / ADAPTER_RECORD, record)
        if texts:
            bpc["trained"] = _bits_per_char(model, load_tokenizer(tok_dir), texts, config.data.block_size)
            bpc["base"] = _base_bits_per_char(meta, texts, config.data.block_size)
            files = {n: {"documents": len(d), "chars": sum(map(len, d))} for n, d in texts.items()}
            run.bits_per_char = {"files": files, **bpc}
        summary = run.write(trainer, result=result, eval_metrics=eval_metrics)
        if not config.run.quiet:
            print(_artifacts_block(out, summary), flush=True)
    trainer.accelerator.wait_for_everyone()
    return summary


def _use_console(trainer: Any, run: _RunRecord) -> None:
    """Replace the Trainer's progress printing by zhtw's bar and log lines; refresh the summary at every save."""
    from transformers import PrinterCallback, ProgressCallback

    Console, Refresh = _console_classes()
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    args = trainer.args
    trainer.add_callback(Console(run.tokens_per_step(args.world_size), quiet=run.config.run.quiet))
    trainer.add_callback(Refresh(run, trainer))


def _console_classes() -> tuple[type, type]:
    """The console and save-refresh callbacks (defined lazily so --help and --dry-run need no torch)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class ConsoleCallback(TrainerCallback):
        """One progress bar (tokens/s, loss, learning rate; tqdm's ETA) and one JSON line of numbers per log."""

        def __init__(self, tokens_per_step: int, *, quiet: bool) -> None:
            self.tokens_per_step, self.quiet = tokens_per_step, quiet
            self.bar: Any = None
            self.postfix: dict[str, str] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not state.is_world_process_zero:
                return
            if state.global_step > 0 and not self.quiet:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                print(
                    f"resuming from {show_path(ckpt)}: step {state.global_step} of {state.max_steps}",
                    flush=True,
                )
            self.started, self.first_step = time.time(), state.global_step
            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                unit="step",
                dynamic_ncols=True,
                disable=bool(args.disable_tqdm) or self.quiet,
            )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is None:
                return
            self.bar.update(state.global_step - self.bar.n)
            elapsed = max(time.time() - self.started, 1e-9)  # evaluation and saving included
            rate = (state.global_step - self.first_step) * self.tokens_per_step / elapsed
            self.postfix["tok/s"] = f"{rate:,.0f}"
            self.bar.set_postfix(self.postfix, refresh=False)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            if not state.is_world_process_zero or not logs:
                return
            if "loss" in logs:
                self.postfix["loss"] = f"{logs['loss']:.4f}"
            if "learning_rate" in logs:
                self.postfix["lr"] = f"{logs['learning_rate']:.2e}"
            if self.bar is not None:
                self.bar.set_postfix(self.postfix, refresh=False)
            if self.quiet:
                return
            line = json.dumps({"step": state.global_step, **log_numbers(logs)})
            (self.bar.write if self.bar is not None and not self.bar.disable else print)(line)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    class RefreshSummaryCallback(TrainerCallback):
        """Rewrite loss.png and training_summary.json (status "training") at every save, so a crashed or
        still-running run has its record beside its checkpoints."""

        def __init__(self, run: _RunRecord, trainer: Any) -> None:
            self.run, self.trainer = run, trainer

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.run.write(self.trainer)

    return ConsoleCallback, RefreshSummaryCallback


def log_numbers(logs: dict[str, Any]) -> dict[str, Any]:
    """A Trainer log as numbers (floats rounded to 6 significant digits), never as quoted strings."""
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if key == "total_flos":
            continue
        out[key] = float(f"{value:.6g}") if isinstance(value, float) and math.isfinite(value) else value
    return out


def plan_block(config: TrainConfig, trainer: Any, run: _RunRecord, resume: str | None) -> str:
    """The block printed before step 1: what is trained on what, for how long, in how much memory."""
    t, d, stats = config.training, config.data, run.data_stats
    world = trainer.args.world_size
    sequences = t.per_device_train_batch_size * t.gradient_accumulation_steps * world
    steps, epochs = _planned_steps(config, stats, sequences)
    est = estimate_for_config(config)
    trainable, total = run.params
    eval_docs = stats.get("documents_eval")
    lines = [
        f"{COMMAND}: {show_path(config.model.model_path)}",
        f"  quantization         {run.quantization}" + (f" ({run.note})" if run.note else ""),
        f"  trainable parameters {trainable:,} of {total:,} ({100 * trainable / max(1, total):.2f}%; "
        f"LoRA r={config.lora.lora_r}, embeddings {config.model.trainable_embeddings})",
        f"  data                 {', '.join(stats.get('inputs') or d.data_files)}",
        f"                       {stats.get('documents', '?')} documents ({eval_docs} held out), "
        f"{_count(stats.get('tokens_train'))} tokens, {_count(stats.get('blocks_train'))} blocks of {d.block_size}",
    ]
    for source in stats.get("mixture") or []:
        lines.append(
            f"                       {source['source']}: {source['documents']} documents, "
            f"{source['tokens']:,} tokens, {source['blocks']} blocks, weight {source['weight']:g}"
        )
    lines += [
        f"  effective batch      {sequences} sequences = {sequences * d.block_size:,} tokens per step "
        f"({t.per_device_train_batch_size} x {t.gradient_accumulation_steps} accumulation x {world} process(es))",
        f"  steps                {steps} ({epochs} epochs)",
        f"  S²-Attn              {_s2_line(config)}",
        f"  memory estimate      {est.peak_gib:.3g} GiB peak on a GPU "
        f"({'fits' if fits(est.peak_gib, config.run.gpu_memory_gb) else 'does NOT fit'} "
        f"{config.run.gpu_memory_gb:g} GB)",
        f"  output               {show_path(Path(t.output_dir).resolve())}",
    ]
    if resume is not None:
        lines.append(f"  resume from          {show_path(resume)}")
    return "\n".join(lines)


def _s2_line(config: TrainConfig) -> str:
    s2, block = config.s2, config.data.block_size
    if not s2.s2attn:
        return "off (full attention)"
    return f"on, groups of {int(s2.s2attn_ratio * block)} tokens ({s2.s2attn_ratio:g} x {block}), {s2.s2attn_variant}"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _planned_steps(config: TrainConfig, stats: dict[str, Any], sequences: int) -> tuple[int | str, str]:
    """(optimizer steps, epochs) the run will take, from max_steps or the packed block count."""
    t = config.training
    blocks = stats.get("blocks_train")
    if t.max_steps > 0:
        epochs = f"{t.max_steps * sequences / blocks:.2f}" if isinstance(blocks, int) and blocks else "?"
        return t.max_steps, epochs
    if not isinstance(blocks, int) or not blocks:
        return "?", f"{t.num_train_epochs:g}"
    per_epoch = max(1, math.ceil(blocks / sequences))
    return math.ceil(per_epoch * t.num_train_epochs), f"{t.num_train_epochs:g}"


def _final_evaluation(trainer: Any) -> dict[str, float]:
    """The evaluation of the final weights: the one logged at the last step when there is one (no second pass)."""
    step = trainer.state.global_step
    logged = [h for h in trainer.state.log_history if "eval_loss" in h and h.get("step") == step]
    if logged:
        return {k: v for k, v in logged[-1].items() if k.startswith("eval_")}
    return trainer.evaluate()


def _artifacts_block(out: Path, summary: dict[str, Any]) -> str:
    """Where the run's artifacts are, printed at the end."""
    files = summary.get("files") or {}
    lines = [
        f"artifacts in {show_path(out.resolve())}:",
        f"  adapter              {show_path(out / ADAPTER_DIR)}   (zhtw-export --adapter {show_path(out / ADAPTER_DIR)})",
        f"  summary              {show_path(out / SUMMARY_FILE)}",
        f"  loss plot            {show_path(out / LOSS_PLOT)}",
    ]
    if files.get("tensorboard"):
        lines.append(
            f"  TensorBoard events   {files['tensorboard']}   (tensorboard --logdir {files['tensorboard']})"
        )
    checkpoints = sorted(out.glob("checkpoint-*"), key=_checkpoint_step)
    if checkpoints:
        lines.append(f"  last checkpoint      {show_path(checkpoints[-1])}")
    return "\n".join(lines)


def no_eval_reason(stats: dict[str, Any], config: TrainConfig) -> str:
    """Why the run has no evaluation split, in the numbers of this data (not the requested fraction)."""
    d = config.data
    n_docs, held = int(stats.get("documents", 0)), int(stats.get("documents_eval", 0))
    if held == 0:
        if d.eval_fraction <= 0:
            return "eval_fraction is 0"
        if d.eval_max_docs == 0:
            return "eval_max_docs is 0"
        if n_docs < 2:
            return (
                f"the data holds {n_docs} document, so none can be held out (eval_fraction {d.eval_fraction} "
                "needs at least 2 documents; 0 of 1 were held out)"
            )
        return f"no document was held out of {n_docs}"
    return (
        f"the {held} held-out document(s) give {stats.get('tokens_eval')} tokens, fewer than one block of "
        f"{d.block_size}; raise eval_fraction / eval_max_docs or lower block_size"
    )


def _adapter_record(config: TrainConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """zhtw_adapter.json: the prepared model this adapter trains on, which the export compares before merging."""
    return {
        "format": "zhtw-adapter/1",
        "prepared_model": show_path(Path(config.model.model_path).resolve()),
        "prepared_model_identity": prepared_identity(meta),
        "tokenizer_sha256": meta.get("tokenizer_sha256"),
    }


# --------------------------------------------------------------------------------------------------------------
# outputs


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in (
        "zhtw",
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "datasets",
        "bitsandbytes",
        "liger-kernel",
    ):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _ppl(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 50 else float("inf")


def _held_out_texts(config: TrainConfig) -> dict[str, list[str]]:
    """The eval_text_files, read now so that a missing or empty file stops the run before training."""
    from zhtw.pretrain.evaluate import EvalError, read_documents, text_label

    files = config.data.eval_text_files
    try:
        return {text_label(f, files): read_documents(f, config.data.eval_text_max_chars) for f in files}
    except EvalError as exc:
        raise TrainError(f"eval_text_files: {exc}") from exc


def _bits_per_char(model: Any, tok: Any, texts: dict[str, list[str]], block_size: int) -> dict[str, float]:
    """Bits per character of each held-out file, in eval mode (full attention), then back to the old mode."""
    from zhtw.pretrain.evaluate import EvalSettings, bits_per_character

    settings = EvalSettings(context=min(block_size, 1024), generation_chars=0, progress=False)
    was_training = model.training
    model.eval()
    try:
        return {
            n: round(bits_per_character(model, tok, d, settings)["bits_per_char"], 4)
            for n, d in texts.items()
        }
    finally:
        model.train(was_training)


def _base_bits_per_char(meta: dict[str, Any], texts: dict[str, list[str]], block_size: int) -> dict[str, Any]:
    """The same table for the base model the prepared model was made from (its own tokenizer)."""
    from zhtw.pretrain.evaluate import load_model

    try:
        model, tok = load_model(meta["base_model"])
    except (ZhtwError, OSError) as exc:
        return {"not_measured": f"{exc}"}
    return _bits_per_char(model, tok, texts, block_size)


class _RunRecord:
    """What training_summary.json and loss.png are made of; written at every save and at the end."""

    def __init__(
        self,
        config: TrainConfig,
        meta: dict[str, Any],
        data_stats: dict[str, Any],
        quantization: str,
        note: str | None,
        params: tuple[int, int],
        started: float,
        tb_dir: Path,
    ) -> None:
        self.config, self.meta, self.data_stats = config, meta, data_stats
        self.quantization, self.note, self.params, self.started = quantization, note, params, started
        self.tb_dir = tb_dir
        self.eval_note: str | None = None
        self.bits_per_char: dict[str, Any] | None = None

    def tokens_per_step(self, world: int) -> int:
        t = self.config.training
        return (
            t.per_device_train_batch_size
            * t.gradient_accumulation_steps
            * world
            * self.config.data.block_size
        )

    def write(
        self, trainer: Any, *, result: Any = None, eval_metrics: dict[str, float] | None = None
    ) -> dict:
        """Write loss.png and training_summary.json (status "training" until `result` is given); return it."""
        out = Path(self.config.training.output_dir)
        _plot_losses(trainer.state.log_history, out / LOSS_PLOT)
        summary = json.loads(json.dumps(self.summary(trainer, result, eval_metrics or {}), default=str))
        record = TrainSummary.from_dict(summary, where=out / SUMMARY_FILE)  # the keys export reads, checked
        record.write(out)
        return record.to_dict()

    def summary(self, trainer: Any, result: Any, eval_metrics: dict[str, float]) -> dict[str, Any]:
        config, args, state = self.config, self.config.training, trainer.state
        history = state.log_history
        train_losses = [h for h in history if "loss" in h]
        eval_losses = [h for h in history if "eval_loss" in h]
        world = trainer.args.world_size
        final_eval = eval_metrics.get("eval_loss") if result is not None else None
        out = Path(args.output_dir).resolve()
        trainable, total = self.params
        return {
            "format": SUMMARY_FORMAT,
            "status": "finished" if result is not None else "training",
            "prepared_model": str(Path(config.model.model_path).resolve()),
            "prepare_metadata": self.meta,
            "tokenizer_path": str(Path(config.model.tokenizer_path or config.model.model_path).resolve()),
            "adapter_path": str(out / ADAPTER_DIR) if result is not None else None,
            "adapter_dir": ADAPTER_DIR,
            "config_file": config.source,
            "options": config.flat(),
            "training_args": trainer.args.to_dict(),
            "quantization": self.quantization,
            "quantization_note": self.note,
            "trainable_embeddings": config.model.trainable_embeddings,
            "trainable_token_ids": self.meta.get("new_token_ids")
            if config.model.trainable_embeddings == "new_rows"
            else None,
            "tie_word_embeddings": bool(self.meta.get("tie_word_embeddings")),
            "s2attn": {
                "enabled": config.s2.s2attn,
                "ratio": config.s2.s2attn_ratio,
                "variant": config.s2.s2attn_variant,
                "note": "training only; evaluation and the exported model use full attention",
            },
            "parameters": {"trainable": trainable, "total": total, "definition": PARAMETER_DEFINITION},
            "data": self.data_stats,
            "world_size": world,
            "global_steps": state.global_step,
            "max_steps": state.max_steps,
            "epochs": state.epoch,
            "tokens_per_step": self.tokens_per_step(world),
            "tokens_seen": state.global_step * self.tokens_per_step(world),
            "final": {
                "train_loss": train_losses[-1]["loss"] if train_losses else None,
                "train_loss_mean": result.training_loss if result is not None else None,
                "eval_loss": final_eval,
                "eval_perplexity": _ppl(final_eval),
                "first_eval_loss": eval_losses[0]["eval_loss"] if eval_losses else None,
                "first_eval_step": eval_losses[0].get("step") if eval_losses else None,
            },
            "log_history": history,
            "memory_estimate": estimate_for_config(config).to_dict(),
            "time": {
                "seconds": round(time.time() - self.started, 2),
                "train_runtime": result.metrics.get("train_runtime") if result is not None else None,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S") if result is not None else None,
            },
            "versions": _versions(),
            "files": {"adapter": ADAPTER_DIR, "loss_plot": LOSS_PLOT, "tensorboard": self.event_dir()},
            "bits_per_char": self.bits_per_char,
            "prepared_model_identity": prepared_identity(self.meta),
            "evaluation_note": self.eval_note,
        }

    def event_dir(self) -> str | None:
        """The directory holding TensorBoard event files, when any were written (else None)."""
        events = sorted(self.tb_dir.rglob("events.out.tfevents.*")) if self.tb_dir.is_dir() else []
        return show_path(events[-1].parent.resolve()) if events else None


def _plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    """loss.png: training and evaluation loss against step (log scale when the range is wide), the learning
    rate on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    rates = [(h["step"], h["learning_rate"]) for h in history if "learning_rate" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="tab:orange")
    if wide_range([v for _, v in train + evals]):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("zhtw continued pretraining")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if rates:
        lr_ax = ax.twinx()
        (line,) = lr_ax.plot(*zip(*rates), "--", color="tab:gray", linewidth=1, label="learning rate")
        lr_ax.set_ylabel("learning rate")
        handles, labels = handles + [line], labels + ["learning rate"]
    if handles:
        ax.legend(handles, labels)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())  # a run killed while saving keeps the previous plot


def wide_range(values: list[float]) -> bool:
    """Whether positive losses span more than a factor of 5 (a linear axis would flatten the later curve)."""
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 5


# --------------------------------------------------------------------------------------------------------------
# command line


_FRONT_FLAGS = ("--version", "--debug")
_SPELLINGS = {"--dry-run": "--dry_run", "--tokenizer": "--tokenizer_path", "-q": "--quiet", "--output": "--output_dir"}


def main(argv: list[str] | None = None) -> int:
    """`zhtw-pretrain train [CONFIG.yaml] [--key value ...]` (see --help); the exit status.

    The zhtw convention (`zhtw.common.cli.run_main`): a refusal prints one line and exits 1, a configuration
    or usage error exits 2, tracebacks only with --debug, --version and --quiet as in every command.
    """
    from zhtw.common.cli import add_common_options, run_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        build_parser().print_help()
        return 0
    front = [a for a in argv if a in _FRONT_FLAGS]
    rest = [_SPELLINGS.get(a, a) for a in argv if a not in _FRONT_FLAGS]
    parser = argparse.ArgumentParser(prog=COMMAND, add_help=False)
    add_common_options(parser, quiet=False)  # --quiet is an option of the config (RunArguments.quiet)
    output = ["output_dir"]
    return run_main(
        COMMAND,
        parser,
        lambda _: _main(rest, output),
        front,
        usage_errors=(ConfigError,),
        describe_os_error=lambda exc: os_error_message(exc, output[0]),
    )


def _main(argv: list[str], output: list[str]) -> int:
    """Parse the configuration, then dry-run or train."""
    config = load_config(argv)
    output[0] = config.training.output_dir
    if config.run.dry_run:
        print(dry_run(config))
        return 0
    train(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
