"""Typed configuration of `zhtw-pretrain train`: a YAML file plus `--key value` overrides.

Every option is a field of one of five dataclasses (model, LoRA, data, S²-Attn, run) or of transformers'
``TrainingArguments``; all live in one flat namespace, so a YAML key and a command-line flag have the same
name. Unknown keys are errors in both places, and ``--help`` lists every option with its help text.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from zhtw.common.errors import ZhtwError

__all__ = [
    "ConfigError",
    "DataArguments",
    "LoraArguments",
    "ModelArguments",
    "RunArguments",
    "S2AttnArguments",
    "TrainConfig",
    "build_parser",
    "load_config",
]

QUANTIZATIONS = ("nf4", "none")
ROWS_IMPLS = ("gather", "peft")
STATE_DTYPES = ("float32", "bfloat16")
TRAINABLE_EMBEDDINGS = ("new_rows", "full", "none")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")


class ConfigError(ValueError, ZhtwError):
    """The YAML file or the command line holds an unknown key or an invalid value."""


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class ModelArguments:
    """Which prepared model to train and how it is loaded."""

    model_path: str = _help(
        "prepared model directory written by `zhtw-pretrain prepare` (config.json, safetensors, the "
        "extended tokenizer and zhtw_prepare.json)",
        default="",
    )
    tokenizer_path: str | None = _help(
        "tokenizer directory; default: the prepared model directory (its tokenizer must have as many "
        "pieces as the model has non-padding embedding rows)",
        default=None,
    )
    quantization: str = _help(
        "'nf4': base linear layers in 4-bit NF4 via bitsandbytes (QLoRA); 'none': LoRA on a full-precision base",
        default="nf4",
    )
    double_quant: bool = _help(
        "quantise the NF4 block scales too (QLoRA's double quantisation)", default=True
    )
    compute_dtype: str = _help(
        "dtype of the frozen base weights and of 4-bit matmuls: bfloat16, float16 or float32 "
        "(CPU runs always use float32)",
        default="bfloat16",
    )
    trainable_embeddings: str = _help(
        "which embedding rows train: 'new_rows' (the tokens added by the tokenizer stage, in the input "
        "embedding and the output head, via peft trainable_token_indices), 'full' (whole embedding and head, "
        "modules_to_save) or 'none'",
        default="new_rows",
    )
    trainable_norms: bool = _help("also train the RMSNorm weights (LongLoRA's recipe)", default=False)
    loss_chunk_tokens: int = _help(
        "tokens per chunk of the chunked cross-entropy (never materialises full float32 logits)", default=1024
    )
    use_fused_loss: bool = _help(
        "use liger-kernel's fused linear cross-entropy on GPU when it is installed (and the head is "
        "not wrapped by trainable rows); otherwise the chunked loss",
        default=True,
    )
    # memory levers for long context on one card (issue 13)
    trainable_rows_impl: str = _help(
        "how trainable_embeddings: new_rows is computed: 'gather' (the trained rows are gathered and their "
        "logits computed apart: no vocabulary-sized temporaries, frozen embedding and head stay in the compute "
        "dtype) or 'peft' (peft's own layer: merges the rows into a float32 copy of each matrix per forward)",
        default="gather",
    )
    offload_activations: bool = _help(
        "with activation_checkpointing, keep each decoder layer's saved input in pinned CPU memory instead of "
        "GPU memory between forward and backward (costs PCIe transfers, saves ~tokens x hidden x 2 bytes per "
        "layer)",
        default=False,
    )
    lora_optimizer_states: str = _help(
        "dtype of the AdamW moment estimates of the LoRA matrices: 'float32' (the Trainer's optimizer) or "
        "'bfloat16' (a built-in AdamW with stochastic rounding; weights and trained rows stay float32)",
        default="float32",
    )


@dataclass
class LoraArguments:
    """The LoRA adapter."""

    lora_r: int = _help("LoRA rank", default=32)
    lora_alpha: float = _help("LoRA alpha (the update is scaled by alpha / r)", default=64.0)
    lora_dropout: float = _help("dropout on the LoRA input", default=0.05)
    lora_target_modules: list[str] = _help(
        "module names that get LoRA; ['all-linear'] targets every linear layer except the output head",
        default_factory=lambda: ["all-linear"],
    )


@dataclass
class DataArguments:
    """Training text and how it is tokenised and packed."""

    data_files: list[str] = _help(
        "training text: JSONL(.gz), Parquet or text files, directories or globs (a zhtw-corpus output dir works); "
        "in YAML also a weighted mixture: [{path: build/corpus, weight: 0.9}, {path: english/, weight: 0.1}]",
        default_factory=list,
    )
    data_weights: list[float] | None = _help(
        "one sampling weight per data_files entry (a weighted mixture, e.g. 0.9 0.1 for 10%% English replay): "
        "blocks are drawn in a fixed order so each source makes up its share; smaller sources repeat",
        default=None,
    )
    block_size: int = _help("tokens per training sequence (context length)", default=2048)
    data_cache_dir: str | None = _help(
        "where tokenised, packed blocks are cached (keyed by tokenizer hash, data files and block size); "
        "default: <output_dir>/../data_cache",
        default=None,
    )
    eval_fraction: float = _help(
        "share of documents held out for evaluation loss and perplexity", default=0.01
    )
    eval_max_docs: int | None = _help("at most this many held-out documents", default=1000)
    eval_text_files: list[str] = _help(
        "held-out text files (e.g. corpus/eval/*.jsonl.gz) for the bits-per-character table of the base model, "
        "the prepared model at step 0 and the trained model (summary and model card); empty: no table",
        default_factory=list,
    )
    eval_text_max_chars: int = _help("characters read from each eval_text_files file", default=100_000)
    streaming: bool = _help(
        "stream the corpus instead of caching it whole (corpora larger than memory)", default=False
    )
    text_key: str = _help("JSON/Parquet field that holds the document text", default="text")
    tokenize_num_proc: int = _help("processes for tokenising", default=1)


@dataclass
class S2AttnArguments:
    """LongLoRA's shifted short attention during training (evaluation uses full attention)."""

    s2attn: bool = _help("train with S²-Attn", default=True)
    s2attn_ratio: float = _help("group size as a share of the block size (LongLoRA: 0.25)", default=0.25)
    s2attn_variant: str = _help(
        "'noleak' (no token sees a later one; default) or 'roll' (the paper's pseudocode, leaks; comparison only)",
        default="noleak",
    )


@dataclass
class RunArguments:
    """Run control that TrainingArguments does not have."""

    stop_at_loss: float | None = _help(
        "stop when the logged training loss falls to this value (a save follows)", default=None
    )
    dry_run: bool = _help(
        "print trainable/total parameters and the estimated peak GPU memory, then exit (no model is built)",
        default=False,
    )
    gpu_memory_gb: float = _help("GPU memory to compare the --dry-run estimate against", default=24.0)
    overwrite: bool = _help(
        "replace an output_dir that holds an earlier run (only one written by zhtw-pretrain train); "
        "to continue a run instead, use resume_from_checkpoint",
        default=False,
    )
    quiet: bool = _help(
        "no plan block, progress bar or log lines (errors and the final summary file only)", default=False
    )
    allow_cpu_4bit: bool = _help(
        "on CPU, train the NF4 base with bitsandbytes (slow, checked correct) instead of falling back to "
        "full precision",
        default=True,
    )


DATACLASSES = (ModelArguments, LoraArguments, DataArguments, S2AttnArguments, RunArguments, TrainingArguments)


@dataclass
class TrainConfig:
    """The parsed configuration: one object per dataclass, plus the YAML it came from."""

    model: ModelArguments
    lora: LoraArguments
    data: DataArguments
    s2: S2AttnArguments
    run: RunArguments
    training: TrainingArguments
    source: str | None = None

    def flat(self) -> dict[str, Any]:
        """Every option of the model, LoRA, data, S²-Attn and run groups as one dict (for the summary)."""
        out: dict[str, Any] = {}
        for part in (self.model, self.lora, self.data, self.s2, self.run):
            out.update(dataclasses.asdict(part))
        return out


def build_parser() -> HfArgumentParser:
    """The parser behind `zhtw-pretrain train --help`."""
    return HfArgumentParser(
        DATACLASSES,
        prog="zhtw-pretrain train",
        description=(
            "QLoRA continued pretraining of a prepared model with trainable new-token rows and S²-Attn. "
            "Give a YAML file of options, then any option as --key value to override it."
        ),
        usage="zhtw-pretrain train [CONFIG.yaml] [--key value ...]",
    )


def _all_keys() -> set[str]:
    return {f.name for cls in DATACLASSES for f in dataclasses.fields(cls) if f.init}


def _cli_overrides(argv: list[str]) -> dict[str, Any]:
    """The options given on the command line, typed by the parser (defaults and required flags ignored)."""
    quiet = build_parser()
    for action in quiet._actions:  # argparse keeps its actions in a (documented by use) list
        if action.dest != "help":
            action.default = argparse.SUPPRESS
            action.required = False
    try:
        namespace, extra = quiet.parse_known_args(argv)
    except SystemExit as exc:
        raise ConfigError(
            f"could not parse the command line {argv}; see `zhtw-pretrain train --help`."
        ) from exc
    if extra:
        flags = [e for e in extra if e.startswith("-")] or extra
        hints = _suggestions([f.lstrip("-").split("=")[0] for f in flags], prefix="--")
        raise ConfigError(
            f"unknown command-line option(s) {flags}{hints}; `zhtw-pretrain train --help` lists every option."
        )
    return vars(namespace)


def _suggestions(unknown: list[str], prefix: str = "") -> str:
    """' (did you mean learning_rate?)' for the unknown keys that are close to a real one, else ''."""
    keys = sorted(_all_keys())
    pairs = []
    for name in unknown:
        near = difflib.get_close_matches(name.replace("-", "_"), keys, n=1, cutoff=0.6)
        if near:
            pairs.append(f"{prefix}{near[0]} for {prefix}{name}")
    return f" (did you mean {', '.join(pairs)}?)" if pairs else ""


def _have_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def _read_yaml(path: Path) -> Any:
    """The parsed YAML file; `ConfigError` naming the file, line and column of a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8."
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}.") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{path}{where}: YAML syntax error ({problem}); write one `key: value` per line, lists as [a, b]."
        ) from exc


_KINDS = {float: "a number", int: "an integer", bool: "true or false"}


def _scalar_type(hint: Any) -> type | None:
    """float, int or bool when a field holds one of them (or None), else None (left to the dataclass)."""
    if hint in _KINDS:
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and args[0] in _KINDS:
            return args[0]
    return None


def _field_types() -> dict[str, type]:
    hints: dict[str, type] = {}
    for cls in DATACLASSES:
        for name, hint in typing.get_type_hints(cls).items():
            kind = _scalar_type(hint)
            if kind is not None:
                hints[name] = kind
    return hints


def _convert(value: Any, kind: type) -> Any:
    """`value` as `kind`, or raise ValueError; strings such as "5e-5" (YAML reads them as text) are numbers."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, str) else ""
        if text not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError
        return text in ("true", "yes", "1")
    if isinstance(value, bool):  # YAML's `yes` for a number is a mistake, not 1
        raise ValueError
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value.strip()) if isinstance(value, str) else int(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError
    return number


_LIST_FIELDS = ("data_files", "lora_target_modules", "eval_text_files")


def _typed(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check and convert every number and flag by its field's type (HfArgumentParser.parse_dict does not);
    a single string where a list is expected (`data_files: build/corpus`) becomes a one-item list."""
    kinds = _field_types()
    out = dict(values)
    if isinstance(values.get("data_files"), list) and any(isinstance(v, dict) for v in values["data_files"]):
        out.update(_weighted_files(values["data_files"], "data_weights" in values, where))
    for key, value in out.items():
        if key == "data_weights" and value is not None:
            out[key] = _weights(value, where)
            continue
        if key in _LIST_FIELDS and isinstance(value, str):
            out[key] = [value]
            continue
        if key in _LIST_FIELDS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{key} must be a list of strings (e.g. [a, b]), got {value!r}{where}.")
        kind = kinds.get(key)
        if kind is None or value is None:
            continue
        try:
            out[key] = _convert(value, kind)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be {_KINDS[kind]}, got {value!r}{where}.") from None
    return out


def _weighted_files(entries: list[Any], have_weights: bool, where: str) -> dict[str, Any]:
    """`data_files: [{path: P, weight: W}, ...]` as data_files [P, ...] plus data_weights [W, ...]."""
    example = "[{path: build/corpus, weight: 0.9}, {path: english/, weight: 0.1}]"
    if have_weights:
        raise ConfigError(
            f"give the weights either in data_files entries or as data_weights, not both{where}."
        )
    if not all(
        isinstance(e, dict) and set(e) == {"path", "weight"} and isinstance(e["path"], str) for e in entries
    ):
        raise ConfigError(
            f"data_files entries must all be paths or all be {{path, weight}} mappings ({example}){where}."
        )
    return {"data_files": [e["path"] for e in entries], "data_weights": [e["weight"] for e in entries]}


def _weights(value: Any, where: str) -> list[float]:
    items = value if isinstance(value, list) else [value]
    try:
        weights = [_convert(v, float) for v in items]
    except (TypeError, ValueError):
        raise ConfigError(f"data_weights must be positive numbers, got {value!r}{where}.") from None
    if any(w <= 0 for w in weights):
        raise ConfigError(f"data_weights must be positive numbers, got {value!r}{where}.")
    return weights


def load_config(argv: list[str]) -> TrainConfig:
    """Parse ``[CONFIG.yaml] [--key value ...]`` into a validated TrainConfig (command line wins)."""
    argv = list(argv)
    source = None
    values: dict[str, Any] = {}
    if argv and not argv[0].startswith("-"):
        source = argv.pop(0)
        path = Path(source)
        if not path.is_file():
            raise ConfigError(
                f"config file {source} not found; pass a YAML file such as configs/tiny-cpu.yaml."
            )
        loaded = _read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source} must hold a mapping of option: value, got {type(loaded).__name__}.")
        values.update(loaded)
    unknown = sorted(str(k) for k in set(values) - _all_keys())
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in {source}{_suggestions(unknown)}; `zhtw-pretrain train --help` lists "
            "every option (YAML keys are the option names without the leading --)."
        )
    parser = build_parser()
    values = _typed(values, f" in {source}") | _typed(_cli_overrides(argv), " on the command line")
    if values.get("dry_run") and not _have_accelerator():
        # a dry run only estimates: let a GPU recipe (bf16/fp16) parse on a machine without a GPU
        values["bf16"] = values["fp16"] = False
    try:
        parts = parser.parse_dict(values, allow_extra_keys=False)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
    config = TrainConfig(*parts, source=source)
    validate(config)
    return config


def _training_checks(t: TrainingArguments, run: RunArguments) -> list[tuple[bool, str]]:
    """Range checks of the TrainingArguments this pipeline relies on (transformers accepts these silently)."""
    return [
        (t.learning_rate > 0, f"learning_rate must be a positive number (e.g. 5e-5), got {t.learning_rate}."),
        (
            t.per_device_train_batch_size >= 1,
            f"per_device_train_batch_size must be at least 1, got {t.per_device_train_batch_size}.",
        ),
        (
            t.per_device_eval_batch_size >= 1,
            f"per_device_eval_batch_size must be at least 1, got {t.per_device_eval_batch_size}.",
        ),
        (
            t.gradient_accumulation_steps >= 1,
            f"gradient_accumulation_steps must be at least 1, got {t.gradient_accumulation_steps}.",
        ),
        (
            t.max_steps != 0 and t.max_steps >= -1,
            f"max_steps: {t.max_steps} trains nothing; set a positive number of steps, or -1 (the default) to "
            "train for num_train_epochs.",
        ),
        (
            t.max_steps > 0 or t.num_train_epochs > 0,
            f"num_train_epochs must be positive when max_steps is -1, got {t.num_train_epochs}.",
        ),
        (t.warmup_steps >= 0, f"warmup_steps must be 0 or more, got {t.warmup_steps}."),
        (t.save_steps > 0, f"save_steps must be positive, got {t.save_steps}."),
        (t.logging_steps > 0, f"logging_steps must be positive, got {t.logging_steps}."),
        (
            not (run.overwrite and _resuming(t.resume_from_checkpoint)),
            "overwrite and resume_from_checkpoint contradict each other: --overwrite deletes the checkpoints a "
            "resume would continue from; pass one of them.",
        ),
    ]


def _lever_checks(m: ModelArguments, t: TrainingArguments) -> list[tuple[bool, str]]:
    """Choices of the memory-lever options."""
    return [
        (
            m.trainable_rows_impl in ROWS_IMPLS,
            f"trainable_rows_impl must be one of {ROWS_IMPLS}, got {m.trainable_rows_impl!r}.",
        ),
        (
            m.lora_optimizer_states in STATE_DTYPES,
            f"lora_optimizer_states must be one of {STATE_DTYPES}, got {m.lora_optimizer_states!r}.",
        ),
        (
            not m.offload_activations or bool(t.activation_checkpointing),
            "offload_activations: true needs activation_checkpointing: true (without checkpointing every "
            "activation would cross PCIe); turn checkpointing on or offloading off.",
        ),
    ]


def _resuming(resume: str | None) -> bool:
    return bool(resume) and str(resume).lower() not in ("false", "no", "none", "auto")


def validate(config: TrainConfig) -> None:
    """Check values the dataclasses cannot type (choices, ranges, required options)."""
    m, lora, d, s2, t = config.model, config.lora, config.data, config.s2, config.training
    checks = [
        (bool(m.model_path), "model_path is required: the directory written by `zhtw-pretrain prepare`."),
        (
            m.quantization in QUANTIZATIONS,
            f"quantization must be one of {QUANTIZATIONS}, got {m.quantization!r}.",
        ),
        (
            m.trainable_embeddings in TRAINABLE_EMBEDDINGS,
            f"trainable_embeddings must be one of {TRAINABLE_EMBEDDINGS}, got {m.trainable_embeddings!r}.",
        ),
        (
            m.compute_dtype in COMPUTE_DTYPES,
            f"compute_dtype must be one of {COMPUTE_DTYPES}, got {m.compute_dtype!r}.",
        ),
        (m.loss_chunk_tokens > 0, "loss_chunk_tokens must be positive."),
        *_lever_checks(m, t),
        (lora.lora_r > 0, "lora_r must be positive."),
        (0.0 <= lora.lora_dropout < 1.0, "lora_dropout must be in [0, 1)."),
        (
            bool(lora.lora_target_modules),
            "lora_target_modules must name at least one module (or 'all-linear').",
        ),
        (d.block_size >= 2, "block_size must be at least 2 tokens."),
        (0.0 <= d.eval_fraction < 1.0, "eval_fraction must be in [0, 1)."),
        (0.0 < s2.s2attn_ratio <= 1.0, "s2attn_ratio must be in (0, 1]; LongLoRA uses 0.25."),
        (s2.s2attn_variant in ("noleak", "roll"), "s2attn_variant must be 'noleak' or 'roll'."),
        (bool(t.output_dir), "output_dir is required: where checkpoints, the adapter and the summary go."),
        (lora.lora_alpha > 0, "lora_alpha must be positive."),
        (d.tokenize_num_proc >= 1, "tokenize_num_proc must be at least 1."),
        (d.eval_max_docs is None or d.eval_max_docs >= 0, "eval_max_docs must be 0 or more (or null)."),
        (d.eval_text_max_chars >= 1, "eval_text_max_chars must be at least 1."),
        *_training_checks(t, config.run),
    ]
    if not config.run.dry_run:
        checks.append(
            (bool(d.data_files), "data_files is required: the corpus files or directories to train on.")
        )
    if d.data_weights is not None:
        checks.append(
            (len(d.data_weights) == len(d.data_files), "give one data_weights entry per data_files entry.")
        )
        checks.append((not d.streaming, "weighted data_files need the cached mode; set streaming: false."))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
