"""`zhtw-export`: merge a trained adapter into the prepared model and write a loadable, documented model.

Why a streaming merge: the adapter was trained against the dequantised base, so the merge must go into a
full-precision copy of the prepared model, never into 4-bit weights; and a 7B model should export on a
machine that holds little more than the model once. The merge therefore reads the prepared safetensors one
tensor at a time, adds the LoRA update (``W + scale * B @ A``, computed in float32), replaces the trained
token rows and any fully trained module (norms, ``modules_to_save``), casts to the export dtype and writes
output shards of at most ``--max-shard-size``: peak memory is one output shard plus one float32 tensor.
The adapter is applied by the key names peft gives it; the reload check below compares against peft's own
``PeftModel`` forward, so any difference in semantics fails the export instead of shipping.

Reads top to bottom: inspect the adapter and check that it fits the prepared model, merge into shards,
write config / generation config / tokenizer files, reload with ``AutoModelForCausalLM`` and compare its
logits with the adapter model's, write the model card (``README.md``) and optionally a GGUF file, and write
``zhtw_export.json`` last (an interrupted export never looks finished).

Usage::

    zhtw-export --model build/prepared --adapter build/train/adapter --output build/export --dtype bfloat16 --gguf q8_0
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from zhtw.pretrain.export.model_card import ModelIdentity

from zhtw.common.cli import DTYPE_ALIASES, ArgumentParser, add_common_options, parse_dtype, run_main
from zhtw.common.cli import DTYPES as COMMON_DTYPES
from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import (
    atomic_write_text,
    check_disjoint,
    files_intact,
    output_lock,
    show_path,
)
from zhtw.common.meta import ArtifactMeta, MetadataError, typed
from zhtw.pretrain.prepare import (
    ADAPTER_RECORD,
    check_replaceable,
    clear_output,
    os_error_message,
    output_entries,
    prepared_identity,
)
from zhtw.pretrain.train_summary import SUMMARY_FILE, TrainSummary

__all__ = [
    "DTYPES",
    "EXPORT_FORMAT",
    "EXPORT_METADATA",
    "ExportMeta",
    "GGUF_TYPES",
    "SAMPLE_TEXTS",
    "AdapterInfo",
    "AdapterMismatchError",
    "ExportError",
    "VerificationError",
    "check_adapter_fits",
    "export",
    "find_training_summary",
    "inspect_adapter",
    "main",
    "merge_to_shards",
    "verify_export",
]

Log = Callable[[str], None]

EXPORT_FORMAT = "zhtw-export/1"
EXPORT_METADATA = "zhtw_export.json"
# the export dtype by any accepted name: float32|bfloat16|float16, and the older fp32|bf16|fp16
DTYPES: dict[str, str] = {**{name: name for name in COMMON_DTYPES}, **DTYPE_ALIASES}
GGUF_TYPES: tuple[str, ...] = ("f16", "q8_0", "none")
STANDARD_ATTENTION = "sdpa"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "zhtw_tokenizer.json",
)
# what an export writes: an older export's directory (no ownership marker) holding only these may be replaced
_OUTPUT_PATTERNS = (
    EXPORT_METADATA,
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "README.md",
    "loss.png",
    "*.gguf",
    *TOKENIZER_FILES,
    ".*.tmp",
)
COMMAND = "zhtw-export"
# short English, zh-TW and mixed texts the reload check runs through both models
SAMPLE_TEXTS: tuple[str, ...] = (
    "Once upon a time, there was a little girl who liked to read books.",
    "臺灣位於東亞，首都是臺北市。本法所稱主管機關，在中央為行政院。",
    "紅樓夢是中國古典小說，作者曹雪芹。The model reads 繁體中文 and English.",
    "def tokenize(text):\n    return [t for t in text.split() if t]  # 程式碼",
)
# max |logit difference| allowed, relative to max(1, max |reference logit|), by the dtype the check runs in
# and the dtype the weights were written in (rounding W + BA to 16 bits is inherent to a 16-bit export)
TOLERANCE: dict[str, float] = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}


class ExportError(ZhtwError):
    """Base class: anything `zhtw-export` refuses or cannot do, with the fix in the message."""


class AdapterMismatchError(ExportError):
    """The adapter was not trained on this prepared model (vocabulary, architecture, shapes or base)."""


class VerificationError(ExportError):
    """The reloaded export does not reproduce the adapter model's logits (or produces NaN/inf)."""


@dataclass
class ExportMeta(ArtifactMeta):
    """`zhtw_export.json`, written last: an export without it never looks finished."""

    FILENAME: ClassVar[str] = EXPORT_METADATA
    FORMAT: ClassVar[str | None] = EXPORT_FORMAT
    MADE_BY: ClassVar[str] = "zhtw-export"

    model: str = typed(str)
    adapter: str = typed(str)
    dtype: str = typed(str)
    verify: dict[str, Any] = typed(dict)
    model_card: dict[str, Any] = typed(dict, default_factory=dict)



# --------------------------------------------------------------------------------------------------------------
# the adapter


@dataclass
class AdapterInfo:
    """A peft LoRA adapter directory as the merge sees it: config, tensor names/shapes and the training run."""

    directory: Path
    config: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    summary: TrainSummary | None = None
    summary_path: Path | None = None
    lora: dict[str, tuple[str, str]] = field(default_factory=dict)  # module -> (A key, B key)
    rows: dict[str, str] = field(default_factory=dict)  # module -> trainable_tokens_delta key
    full: dict[str, str] = field(default_factory=dict)  # base tensor name -> adapter key

    def row_indices(self, module: str, tied: bool) -> list[int]:
        """The token ids whose rows ``module`` (embed_tokens / lm_head) replaces."""
        spec = self.config.get("trainable_token_indices")
        if isinstance(spec, dict):
            for name, ids in spec.items():
                if module == name or module.endswith("." + name):
                    return [int(i) for i in ids]
            raise AdapterMismatchError(
                f"{self.directory}: trained rows for {module} but trainable_token_indices names only "
                f"{sorted(spec)}; the adapter is inconsistent, retrain or re-save it."
            )
        if isinstance(spec, list):
            return [int(i) for i in spec]
        raise AdapterMismatchError(
            f"{self.directory}: the adapter stores trained token rows for {module} but its adapter_config.json "
            "has no trainable_token_indices; re-save the adapter with peft."
        )

    def scale(self, module: str, rank: int) -> float:
        """LoRA's scaling for ``module``: alpha / r (alpha / sqrt(r) with rsLoRA), honouring alpha_pattern."""
        alpha = float(self.config.get("lora_alpha", 8))
        for pattern, value in (self.config.get("alpha_pattern") or {}).items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                alpha = float(value)
                break
        return alpha / math.sqrt(rank) if self.config.get("use_rslora") else alpha / rank


_UNSUPPORTED = {
    "use_dora": "DoRA adapters",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D) layers",
    "lora_bias": "LoRA bias terms",
    "target_parameters": "LoRA on parameters (target_parameters)",
    "layer_replication": "layer replication",
}


def _adapter_dir(path: Path) -> Path:
    """Accept an adapter directory, a checkpoint-N directory or a training output directory (its adapter/)."""
    if (path / ADAPTER_CONFIG).is_file():
        return path
    if (path / "adapter" / ADAPTER_CONFIG).is_file():
        return path / "adapter"
    raise ExportError(
        f"{path} holds no {ADAPTER_CONFIG}; pass --adapter the `adapter/` or a `checkpoint-N/` directory of a "
        "`zhtw-pretrain train` output (or the output directory itself)."
    )


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    """A JSON object from `path`; `ExportError` naming the file and `fix` when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{show_path(path)} cannot be read ({e}); {fix}.") from e
    if not isinstance(data, dict):
        raise ExportError(f"{show_path(path)} holds {type(data).__name__}, not a JSON object; {fix}.")
    return data


def find_training_summary(adapter_dir: Path) -> Path | None:
    """training_summary.json of the run an adapter (or checkpoint-N) belongs to, if it is beside it."""
    for d in (adapter_dir, adapter_dir.parent):
        if (d / SUMMARY_FILE).is_file():
            return d / SUMMARY_FILE
    return None


def _read_summary(path: Path) -> TrainSummary:
    """The run's summary through its typed class; `ExportError` naming the file when it is damaged or foreign."""
    try:
        return TrainSummary.read(path.parent)
    except MetadataError as e:
        raise ExportError(f"{e} Or move it away to export without the training record.") from e


def inspect_adapter(path: str | Path) -> AdapterInfo:
    """Read an adapter's config and tensor header (no weights) and sort its tensors into LoRA / rows / full."""
    from safetensors import safe_open

    directory = _adapter_dir(Path(path).expanduser())
    config = _read_json(
        directory / ADAPTER_CONFIG, "re-save the adapter with peft (or export another checkpoint)"
    )
    if config.get("peft_type") != "LORA":
        raise ExportError(
            f"{directory} is a {config.get('peft_type')} adapter; zhtw-export merges LoRA adapters "
            "(what `zhtw-pretrain train` writes)."
        )
    for key, what in _UNSUPPORTED.items():
        value = config.get(key)
        if value and value != "none":
            raise ExportError(
                f"{directory} uses {what} ({key}={value!r}), which zhtw-export does not merge; load it with "
                "peft and call merge_and_unload() instead."
            )
    if config.get("bias", "none") != "none":
        raise ExportError(
            f"{directory} trains biases (bias={config['bias']!r}), which zhtw-export does not merge; "
            "train with bias='none' (the zhtw-pretrain default)."
        )
    weights = directory / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ExportError(
            f"{directory} has no {ADAPTER_WEIGHTS}; save the adapter with safetensors (peft's default)."
        )
    try:
        with safe_open(str(weights), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError) for a damaged file
        raise ExportError(
            f"{show_path(weights)} is not a readable safetensors file ({e}); the adapter is damaged or was cut "
            "short. Export another checkpoint (--adapter OUTPUT_DIR/checkpoint-N)."
        ) from e
    summary_path = find_training_summary(directory)
    summary = _read_summary(summary_path) if summary_path else None
    info = AdapterInfo(directory, config, shapes, summary, summary_path)
    for key in shapes:
        name = key.removeprefix("base_model.model.")
        if name.endswith((".lora_A.weight", ".lora_B.weight")):
            module = name.rsplit(".", 2)[0]
            a, b = info.lora.get(module, ("", ""))
            info.lora[module] = (key, b) if ".lora_A." in name else (a, key)
        elif name.endswith(".token_adapter.trainable_tokens_delta"):
            info.rows[name.removesuffix(".token_adapter.trainable_tokens_delta")] = key
        elif "lora_embedding_" in name or "lora_magnitude" in name or ".lora_" in name:
            raise ExportError(
                f"{directory}: tensor {key} is a LoRA variant zhtw-export does not merge (LoRA on embeddings "
                "or DoRA); train LoRA on linear layers only, as `zhtw-pretrain train` does."
            )
        else:
            info.full[name] = key
    incomplete = [m for m, (a, b) in info.lora.items() if not (a and b)]
    if incomplete:
        raise ExportError(
            f"{directory}: LoRA modules {incomplete[:3]} lack lora_A or lora_B; re-save the adapter."
        )
    return info


# --------------------------------------------------------------------------------------------------------------
# the prepared model


@dataclass
class ModelFiles:
    """A Hugging Face model directory's config and tensor index (names, shapes, dtypes, which file)."""

    directory: Path
    config: dict[str, Any]
    prepare: dict[str, Any]
    where: dict[str, Path]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    @property
    def rows(self) -> int:
        return int(self.config["vocab_size"])

    def describe(self) -> str:
        arch = (self.config.get("architectures") or [self.config.get("model_type", "?")])[0]
        return (
            f"{arch}, {self.config.get('num_hidden_layers')} layers, hidden {self.config.get('hidden_size')}, "
            f"{self.rows:,} embedding rows"
        )


def load_model_files(model_dir: str | Path) -> ModelFiles:
    """Index a prepared model directory without loading weights; `ExportError` saying what to pass otherwise."""
    from safetensors import safe_open

    from zhtw.pretrain.prepare import NotPreparedError, load_prepare_metadata

    d = Path(model_dir).expanduser()
    if not (d / "config.json").is_file():
        raise ExportError(
            f"{d} has no config.json; pass --model the directory written by `zhtw-pretrain prepare`."
        )
    try:
        prepare = load_prepare_metadata(d)
    except NotPreparedError as e:
        raise ExportError(str(e)) from e
    index = d / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({d / f for f in json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()})
    else:
        files = sorted(d.glob("model*.safetensors"))
    if not files:
        raise ExportError(
            f"{d} holds no safetensors weights; rerun `zhtw-pretrain prepare` (it saves safetensors)."
        )
    where: dict[str, Path] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    for path in files:
        with safe_open(str(path), "pt") as f:
            for k in f.keys():  # noqa: SIM118 (safe_open API)
                sl = f.get_slice(k)
                where[k], shapes[k], dtypes[k] = path, tuple(sl.get_shape()), sl.get_dtype()
    config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    return ModelFiles(d.resolve(), config, prepare, where, shapes, dtypes)


def _adapter_base_description(info: AdapterInfo) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """(where the adapter says it came from, that model's config.json, its zhtw_prepare.json) where known."""
    recorded = None
    meta = None
    if info.summary:
        recorded = info.summary.prepared_model
        meta = info.summary.prepare_metadata or None
    recorded = recorded or info.config.get("base_model_name_or_path")
    cfg = None
    if recorded and (Path(recorded) / "config.json").is_file():
        cfg = json.loads((Path(recorded) / "config.json").read_text(encoding="utf-8"))
    return str(recorded), cfg, meta


def check_adapter_fits(model: ModelFiles, info: AdapterInfo) -> None:
    """Refuse an adapter trained on another model: base identity, vocabulary, architecture, every shape."""
    recorded, base_cfg, base_meta = _adapter_base_description(info)
    head = f"the adapter {info.directory} does not fit the model {model.directory}"
    fix = f"Pass --model the prepared directory the adapter was trained on (recorded: {recorded})."

    def mismatch(what: str, adapter_side: Any, model_side: Any) -> AdapterMismatchError:
        return AdapterMismatchError(
            f"{head}: {what}: the adapter was trained on {adapter_side}, the model has {model_side}. {fix}"
        )

    if base_cfg is not None:
        a_arch = (base_cfg.get("architectures") or [base_cfg.get("model_type")])[0]
        m_arch = (model.config.get("architectures") or [model.config.get("model_type")])[0]
        if a_arch != m_arch:
            raise mismatch("architecture", a_arch, m_arch)
        for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_key_value_heads"):
            if key in base_cfg and base_cfg[key] != model.config.get(key):
                raise mismatch(key, f"{a_arch} with {key}={base_cfg[key]}", f"{key}={model.config.get(key)}")
        a_tied, m_tied = bool(base_cfg.get("tie_word_embeddings", False)), model.tied
        if a_tied != m_tied:
            tie = {True: "tied input/output embeddings", False: "an untied output head"}
            raise mismatch("architecture", f"{a_arch} with {tie[a_tied]}", tie[m_tied])
        if int(base_cfg.get("vocab_size", model.rows)) != model.rows:
            raise mismatch("vocabulary size", f"{base_cfg['vocab_size']:,} embedding rows", f"{model.rows:,}")
    if base_meta:
        if int(base_meta.get("embedding_rows", model.rows)) != model.rows:
            raise mismatch(
                "vocabulary size",
                f"{base_meta['embedding_rows']:,} embedding rows ({base_meta.get('tokenizer_size')} pieces)",
                f"{model.rows:,} rows ({model.prepare.get('tokenizer_size')} pieces)",
            )
        if base_meta.get("tokenizer_sha256") != model.prepare.get("tokenizer_sha256"):
            raise mismatch(
                "tokenizer",
                f"tokenizer.model {str(base_meta.get('tokenizer_sha256'))[:12]}…",
                f"tokenizer.model {str(model.prepare.get('tokenizer_sha256'))[:12]}…",
            )
    hidden = int(model.config["hidden_size"])
    for module, (a_key, b_key) in info.lora.items():
        weight = f"{module}.weight"
        if weight not in model.shapes:
            raise mismatch(
                "architecture", f"a model with module {module}", f"no such module ({model.describe()})"
            )
        want = (info.shapes[b_key][0], info.shapes[a_key][1])
        if model.shapes[weight] != want or info.shapes[a_key][0] != info.shapes[b_key][1]:
            raise mismatch(
                f"shape of {weight}", f"{list(want)}", f"{list(model.shapes[weight])} ({model.describe()})"
            )
    for module, key in info.rows.items():
        weight = f"{module}.weight"
        if weight not in model.shapes and not (model.tied and module.endswith("lm_head")):
            raise mismatch("architecture", f"a model with {module}", f"no such module ({model.describe()})")
        ids = info.row_indices(module, model.tied)
        n, width = info.shapes[key]
        if n != len(ids) or width != hidden:
            raise mismatch(f"trained rows of {module}", f"{n} rows of width {width}", f"width {hidden}")
        if ids and (max(ids) >= model.rows or min(ids) < 0):
            raise mismatch(
                "vocabulary size", f"token ids up to {max(ids):,}", f"{model.rows:,} embedding rows"
            )
    for name, key in info.full.items():
        if name not in model.shapes:
            if model.tied and name == "lm_head.weight":
                continue
            raise mismatch("architecture", f"a model with {name}", f"no such tensor ({model.describe()})")
        if model.shapes[name] != info.shapes[key]:
            what = "vocabulary size" if "embed_tokens" in name or "lm_head" in name else f"shape of {name}"
            raise mismatch(
                what, f"{list(info.shapes[key])}", f"{list(model.shapes[name])} ({model.describe()})"
            )


def _recorded_identity(info: AdapterInfo) -> tuple[str | None, str, str]:
    """(identity of the prepared model the adapter was trained on, where it is recorded, that model's path)."""
    record = info.directory / ADAPTER_RECORD
    if record.is_file():
        data = _read_json(record, "retrain, or pass --force to merge without the identity check")
        return data.get("prepared_model_identity"), show_path(record), str(data.get("prepared_model"))
    summary = info.summary or TrainSummary()
    identity = summary.prepared_model_identity
    if identity is None and summary.prepare_metadata.get("files"):
        identity = prepared_identity(summary.prepare_metadata)  # a summary from before the identity field
    return identity, show_path(info.summary_path or info.directory), str(summary.prepared_model)


def check_same_prepared_model(model: ModelFiles, info: AdapterInfo) -> None:
    """Refuse a prepared model whose files changed since prepare, or that is not the one the adapter was
    trained on (same shapes and tokenizer, other weights: the merge would succeed and be wrong)."""
    force = "pass --force if you know they match"
    changed = [
        n for n, d in (model.prepare.get("files") or {}).items() if not files_intact(model.directory, {n: d})
    ]
    if changed:
        raise AdapterMismatchError(
            f"the prepared model {show_path(model.directory)} was changed after `zhtw-pretrain prepare`: "
            f"{', '.join(changed)} no longer match zhtw_prepare.json. Rerun prepare into a new directory, or "
            f"{force}."
        )
    recorded, where, trained_on = _recorded_identity(info)
    current = prepared_identity(model.prepare)
    if recorded is not None and recorded != current:
        raise AdapterMismatchError(
            f"the adapter {show_path(info.directory)} was trained on the prepared model {trained_on} (identity "
            f"{recorded[:12]}…, recorded in {where}), not on {show_path(model.directory)} (identity "
            f"{current[:12]}…): same shapes, other weights. Pass --model the prepared directory the adapter was "
            f"trained on, or {force}."
        )


# --------------------------------------------------------------------------------------------------------------
# merging, shard by shard


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", text.upper())
    if not m:
        raise ExportError(f"--max-shard-size {text!r} is not a size such as 2GB or 500MB.")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " "))


def _plan_shards(names: Sequence[str], nbytes: dict[str, int], max_bytes: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for name in names:
        if shards[-1] and size + nbytes[name] > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes[name]
    return shards


def _check_finite(name: str, tensor: Any, model: ModelFiles, info: AdapterInfo) -> None:
    """Refuse NaN/inf in a merged tensor (always, even with --verify none: one pass over data already in memory)."""
    import torch

    if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
        return
    raise VerificationError(
        f"the merged tensor {name} holds NaN or inf values (from the adapter {show_path(info.directory)} or the "
        f"prepared model {show_path(model.directory)}); nothing usable can be exported. Export an earlier "
        "checkpoint (--adapter OUTPUT_DIR/checkpoint-N)."
    )


def merge_to_shards(
    model: ModelFiles,
    info: AdapterInfo,
    out: Path,
    dtype: str,
    max_shard_bytes: int,
    log: Log = print,
) -> dict[str, Any]:
    """Write the merged weights as safetensors shards in `out`; return counts, sizes and the shard names.

    Every tensor is read on its own, merged in float32 and cast to `dtype` (1-D tensors too: norms are tiny).
    Tied models keep one matrix (no ``lm_head.weight`` is written) so ``tie_word_embeddings`` holds.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    target = getattr(torch, DTYPES[dtype])
    names = [n for n in model.shapes if not (model.tied and n == "lm_head.weight")]
    itemsize = torch.empty((), dtype=target).element_size()
    nbytes = {n: math.prod(model.shapes[n]) * itemsize for n in names}
    plan = _plan_shards(names, nbytes, max_shard_bytes)
    files = (
        ["model.safetensors"]
        if len(plan) == 1
        else [f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))]
    )
    counts = {"lora": 0, "rows": 0, "full": 0, "unchanged": 0}
    weight_map: dict[str, str] = {}
    # memory-mapped inputs count towards RSS once touched: reopened per output shard, so pages are unmapped
    handles: dict[Path, Any] = {}
    adapter: Any = None

    def read(name: str) -> Any:
        path = model.where[name]
        if path not in handles:
            handles[path] = safe_open(str(path), "pt")
        return handles[path].get_tensor(name)

    try:
        for file, shard in zip(files, plan):
            handles.clear()
            adapter = safe_open(str(info.directory / ADAPTER_WEIGHTS), "pt")
            tensors: dict[str, Any] = {}
            for name in shard:
                module = name.removesuffix(".weight")
                w = read(name)
                if name in info.full:
                    w = adapter.get_tensor(info.full[name])
                    counts["full"] += 1
                elif module in info.lora:
                    a_key, b_key = info.lora[module]
                    a, b = adapter.get_tensor(a_key).float(), adapter.get_tensor(b_key).float()
                    w = w.float().addmm_(b, a, alpha=info.scale(module, a.shape[0]))
                    counts["lora"] += 1
                else:
                    counts["unchanged"] += 1
                row_modules = [m for m in info.rows if m == module]
                if model.tied and name.endswith("embed_tokens.weight"):
                    row_modules += [m for m in info.rows if m.endswith("lm_head")]
                for m in row_modules:
                    ids = torch.tensor(info.row_indices(m, model.tied), dtype=torch.long)
                    w = w.float() if w.dtype != torch.float32 else w.clone()
                    w[ids] = adapter.get_tensor(info.rows[m]).float()
                    counts["rows"] += len(ids)
                tensors[name] = (w.to(target) if w.is_floating_point() else w).contiguous()
                _check_finite(name, tensors[name], model, info)
                weight_map[name] = file
            save_file(tensors, str(out / file), metadata={"format": "pt"})
            log(f"  wrote {file} ({len(shard)} tensors, {sum(nbytes[n] for n in shard) / 2**20:,.1f} MiB)")
            del tensors
    finally:
        handles.clear()
        del adapter
    total = sum(nbytes.values())
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        atomic_write_text(out / "model.safetensors.index.json", json.dumps(index, indent=2) + "\n")
    return {"files": files, "tensors": len(names), "bytes": total, "merged": counts}


# --------------------------------------------------------------------------------------------------------------
# config, generation config, tokenizer


def write_model_config(model: ModelFiles, out: Path, dtype: str) -> dict[str, Any]:
    """config.json with the export dtype and a standard attention implementation (never the S²-Attn name)."""
    config = dict(model.config)
    for key in ("attn_implementation", "_attn_implementation", "_attn_implementation_internal"):
        config.pop(key, None)
    config["attn_implementation"] = STANDARD_ATTENTION  # transformers 5 reads this key at from_pretrained
    config["dtype"] = DTYPES[dtype]
    config["use_cache"] = True
    config.pop("torch_dtype", None)
    atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    return config


def write_generation_config(model: ModelFiles, out: Path) -> None:
    """generation_config.json: the prepared model's when present, else built from the model config."""
    from transformers import GenerationConfig

    src = model.directory / "generation_config.json"
    if src.is_file():
        gen = GenerationConfig.from_pretrained(model.directory)
    else:
        from transformers import AutoConfig

        gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model.directory))
    gen.save_pretrained(out)


def copy_tokenizer(model: ModelFiles, out: Path) -> list[str]:
    """Copy the extended tokenizer files the prepare stage put beside the model."""
    copied = []
    for name in TOKENIZER_FILES:
        src = model.directory / name
        if src.is_file():
            shutil.copyfile(src, out / name)
            copied.append(name)
    if "tokenizer.json" not in copied and "tokenizer.model" not in copied:
        raise ExportError(
            f"{model.directory} holds no tokenizer files; rerun `zhtw-pretrain prepare`, which copies them."
        )
    return copied


# --------------------------------------------------------------------------------------------------------------
# reload check


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _param_count(model: ModelFiles) -> int:
    return sum(math.prod(s) for n, s in model.shapes.items() if not (model.tied and n == "lm_head.weight"))


def choose_verify_dtype(requested: str, export_dtype: str, model: ModelFiles) -> str:
    """float32 when asked, or when 'auto' and two float32 copies fit in available memory; else export dtype."""
    if requested != "auto":
        return DTYPES.get(requested, requested)
    need = 4 * _param_count(model) * 1.3
    avail = _available_memory()
    return "float32" if avail is None or need < avail else DTYPES[export_dtype]


def _encode_samples(out: Path, texts: Sequence[str]) -> list[Any]:
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    return [torch.tensor([tok(t)["input_ids"]], dtype=torch.long) for t in texts]


def _logits(model: Any, batches: Sequence[Any]) -> list[Any]:
    import torch

    model.eval()
    with torch.no_grad():
        return [model(input_ids=ids).logits.float() for ids in batches]


def verify_export(
    model_dir: Path,
    adapter_dir: Path,
    out: Path,
    verify_dtype: str,
    export_dtype: str,
    texts: Sequence[str] = SAMPLE_TEXTS,
    log: Log = print,
) -> dict[str, Any]:
    """Reload `out` with AutoModelForCausalLM and compare its logits with PeftModel(prepared, adapter).

    The adapter model runs first and is freed before the export loads, so the check holds one model at a
    time. Raises `VerificationError` on NaN/inf or a difference above the tolerance for the dtypes involved.
    """
    import gc

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, verify_dtype)
    batches = _encode_samples(out, texts)
    base = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation=STANDARD_ATTENTION
    )
    reference = _logits(PeftModel.from_pretrained(base, adapter_dir), batches)
    del base
    gc.collect()
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=dtype)
    attn = merged.config._attn_implementation
    got = _logits(merged, batches)
    del merged
    gc.collect()

    ref_all = torch.cat([r.reshape(-1) for r in reference])
    got_all = torch.cat([g.reshape(-1) for g in got])
    finite = bool(torch.isfinite(got_all).all())
    diff = float((got_all - ref_all).abs().max()) if finite else float("inf")
    scale = max(1.0, float(ref_all.abs().max()))
    # weights written in 16 bits differ from W + BA by their rounding: use the looser of the two dtypes
    tol = max(TOLERANCE[verify_dtype], TOLERANCE[DTYPES[export_dtype]]) * scale
    top1 = float(
        torch.cat([(g.argmax(-1) == r.argmax(-1)).reshape(-1) for g, r in zip(got, reference)]).float().mean()
    )
    result = {
        "dtype": verify_dtype,
        "texts": len(texts),
        "tokens": int(sum(b.shape[1] for b in batches)),
        "max_abs_diff": diff,
        "max_abs_logit": scale,
        "tolerance": tol,
        "top1_agreement": top1,
        "finite": finite,
        "attn_implementation": attn,
        "passed": finite and diff <= tol and attn == STANDARD_ATTENTION,
    }
    log(
        f"reload check ({verify_dtype}, {result['tokens']} tokens): max |Δlogit| {diff:.3g} "
        f"(tolerance {tol:.3g}), top-1 agreement {100 * top1:.1f}%, attention {attn}"
    )
    if not finite:
        raise VerificationError(
            f"the exported model in {out} produces NaN or inf logits; the adapter or the prepared model holds "
            "non-finite weights. Export an earlier checkpoint (--adapter OUTPUT_DIR/checkpoint-N)."
        )
    if attn != STANDARD_ATTENTION:
        raise VerificationError(f"{out} loads with attention {attn!r}, expected {STANDARD_ATTENTION!r}.")
    if diff > tol:
        raise VerificationError(
            f"the exported model in {out} differs from the adapter model: max |Δlogit| {diff:.4g} > tolerance "
            f"{tol:.4g} ({verify_dtype}). The adapter may use a feature the merge does not apply; report it, or "
            "export with --dtype float32 to rule out rounding."
        )
    return result


# --------------------------------------------------------------------------------------------------------------
# the stage


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _versions() -> dict[str, str]:
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("zhtw", "torch", "transformers", "peft", "safetensors", "huggingface_hub", "gguf"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def export(
    model_dir: str | Path,
    adapter: str | Path,
    output: str | Path,
    dtype: str = "bfloat16",
    gguf: str = "none",
    max_shard_size: str = "2GB",
    verify: str = "auto",
    overwrite: bool = False,
    tokenizer_report: str | Path | None = None,
    license: str = "other",
    base_model_id: str | None = None,
    force: bool = False,
    log: Log = print,
    datasets: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Merge `adapter` into the prepared model `model_dir` and write the full export to `output`.

    `force` skips only the prepared-model identity check (shapes, vocabulary and NaN checks always run).
    Returns the metadata written to ``zhtw_export.json`` (files, merge counts, verification, timings, peak RSS).
    """
    t0 = time.perf_counter()
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r} is unknown; choose one of {', '.join(COMMON_DTYPES)}.")
    if gguf not in GGUF_TYPES:
        raise ExportError(f"--gguf {gguf!r} is unknown; choose one of {', '.join(GGUF_TYPES)}.")
    if verify not in ("auto", "fp32", "export", "none"):
        raise ExportError(f"--verify {verify!r} is unknown; choose auto, fp32, export or none.")
    shard_bytes = _parse_size(max_shard_size)
    if tokenizer_report and not Path(tokenizer_report).expanduser().is_file():
        raise ExportError(
            f"--tokenizer-report {tokenizer_report} does not exist; pass the eval.json of `zhtw-tok eval`."
        )
    out = Path(output).expanduser()
    model = load_model_files(model_dir)
    info = inspect_adapter(adapter)
    inputs = [model.directory, info.directory, *([tokenizer_report] if tokenizer_report else [])]
    check_disjoint(out, inputs)
    check_adapter_fits(model, info)
    if force:
        log("--force: not checking that the adapter was trained on this prepared model")
    else:
        check_same_prepared_model(model, info)
    log(
        f"adapter {info.directory}: {len(info.lora)} LoRA modules, "
        f"{sum(info.shapes[k][0] for k in info.rows.values()):,} trained token rows, "
        f"{len(info.full)} fully trained tensors; fits {model.directory} ({model.describe()})"
    )
    _check_output(out, overwrite)
    from zhtw.pretrain.export.model_card import model_identity

    identity = model_identity(model.prepare, base_model_id, license, datasets or ())
    with output_lock(out, command=COMMAND):
        clear_output(out, command=COMMAND)
        return _write_export(
            model,
            info,
            out,
            dtype,
            gguf,
            shard_bytes,
            verify,
            tokenizer_report,
            identity,
            log,
            t0,
        )


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output without --overwrite, and one that no zhtw-export wrote even with it."""
    entries = output_entries(out)
    if not entries:
        return
    if not overwrite:
        unfinished = (
            "" if (out / EXPORT_METADATA).is_file() else f" (no {EXPORT_METADATA}: an interrupted export?)"
        )
        raise ExportError(
            f"{show_path(out)} is not empty{unfinished}; choose another --output or pass --overwrite to replace it."
        )
    check_replaceable(out, command=COMMAND, legacy=_OUTPUT_PATTERNS)


def _write_export(
    model: ModelFiles,
    info: AdapterInfo,
    out: Path,
    dtype: str,
    gguf: str,
    shard_bytes: int,
    verify: str,
    tokenizer_report: str | Path | None,
    identity: ModelIdentity,
    log: Log,
    t0: float,
) -> dict[str, Any]:
    """Merge, write config, generation config and tokenizer, check the reload, write GGUF, card, metadata."""
    log(f"merging into {out} ({DTYPES[dtype]}, shards of at most {shard_bytes / 2**20:,.0f} MiB) ...")
    t = time.perf_counter()
    merge = merge_to_shards(model, info, out, dtype, shard_bytes, log)
    merge["seconds"] = round(time.perf_counter() - t, 2)
    merge["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    config = write_model_config(model, out, dtype)
    write_generation_config(model, out)
    tokenizer_files = copy_tokenizer(model, out)

    if verify == "none":
        check: dict[str, Any] = {"skipped": True}
        log("reload check skipped (--verify none)")
    else:
        verify_dtype = choose_verify_dtype("fp32" if verify == "fp32" else verify, dtype, model)
        if verify == "export":
            verify_dtype = DTYPES[dtype]
        t = time.perf_counter()
        check = verify_export(model.directory, info.directory, out, verify_dtype, dtype, log=log)
        check["seconds"] = round(time.perf_counter() - t, 2)
    peak_after_verify = round(_peak_rss_mb(), 1)

    meta: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "model": str(model.directory),
        "adapter": str(info.directory.resolve()),
        "training_summary": str(info.summary_path.resolve()) if info.summary_path else None,
        "dtype": DTYPES[dtype],
        "attn_implementation": config["attn_implementation"],
        "merge": merge,
        "verify": check,
        "tokenizer_files": tokenizer_files,
        "prepare_metadata": model.prepare,
        "versions": _versions(),
        "peak_rss_mb": {"merge": merge["peak_rss_mb"], "verify": peak_after_verify},
    }

    if gguf != "none":
        from zhtw.pretrain.export.gguf_writer import GGUFExportError, write_gguf

        t = time.perf_counter()
        try:
            meta["gguf"] = write_gguf(out, gguf, log=log, identity=identity)
        except GGUFExportError as e:
            raise ExportError(f"GGUF: {e}") from e
        meta["gguf"]["seconds"] = round(time.perf_counter() - t, 2)
        meta["peak_rss_mb"]["gguf"] = round(_peak_rss_mb(), 1)

    from zhtw.pretrain.export.model_card import ModelCardError, write_model_card

    try:
        meta["model_card"] = write_model_card(
            out,
            model.prepare,
            info.summary,
            meta,
            tokenizer_report=tokenizer_report,
            identity=identity,
            gguf_file=(meta.get("gguf") or {}).get("file"),
        )
    except ModelCardError as e:
        raise ExportError(str(e)) from e
    log(f"wrote the model card {out / 'README.md'}")
    meta["seconds"] = round(time.perf_counter() - t0, 2)
    ExportMeta.from_dict(json.loads(json.dumps(meta, default=str)), where=out / EXPORT_METADATA).write(out)
    log(f"exported {out} in {meta['seconds']:.1f} s (peak RSS {max(meta['peak_rss_mb'].values()):,.0f} MB)")
    return meta


# --------------------------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="zhtw-export",
        description="Merge a zhtw-pretrain adapter (LoRA + trained token rows) into a full-precision copy of the "
        "prepared model on CPU, write sharded safetensors, config, tokenizer, generation config and a model card, "
        "check that the reloaded model reproduces the adapter model's logits, and optionally write a GGUF file "
        "for llama.cpp / Ollama.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model", required=True, help="the prepared model directory (`zhtw-pretrain prepare` output)"
    )
    p.add_argument(
        "--adapter",
        required=True,
        help="adapter directory: OUTPUT_DIR/adapter, OUTPUT_DIR/checkpoint-N, or the training output directory",
    )
    p.add_argument("--output", required=True, help="directory for the exported model")
    p.add_argument("--dtype", type=_export_dtype, default="bfloat16",
                   help="dtype of the written weights: float32, bfloat16 or float16 (fp32/bf16/fp16 accepted)")
    p.add_argument(
        "--gguf", choices=GGUF_TYPES, default="none", help="also write a GGUF file with tensors in this type"
    )
    p.add_argument("--max-shard-size", default="2GB", help="largest safetensors shard (bounds merge memory)")
    p.add_argument(
        "--verify",
        type=lambda v: "fp32" if v == "float32" else v,
        choices=["auto", "fp32", "export", "none"],
        default="auto",
        help="dtype of the reload check: fp32, the export dtype, or auto (fp32 when a float32 copy fits in "
        "memory); 'none' skips it",
    )
    p.add_argument(
        "--tokenizer-report",
        default=None,
        help="eval.json of `zhtw-tok eval` (base tokenizer first) for the card's compression table; default: "
        "looked for beside the tokenizer, else measured on a sample of the training text",
    )
    p.add_argument(
        "--base-model-id",
        default=None,
        help="the base model's hub id for the card's and GGUF's base_model (e.g. meta-llama/Llama-2-7b-hf); "
        "default: the base's own config (_name_or_path) when it names a hub id, else none",
    )
    p.add_argument(
        "--license", default="other", help="license identifier for the card (e.g. llama2, apache-2.0)"
    )
    p.add_argument(
        "--dataset",
        action="append",
        default=None,
        metavar="NAME",
        help="a dataset the model was trained on, named as you want it in the card's `datasets` (e.g. a hub id); "
        "repeat for several",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output directory written by zhtw-export"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="merge even when the adapter records another prepared model (same shapes, other weights) or the "
        "prepared model changed after prepare",
    )
    add_common_options(p)
    return p


def _export_dtype(text: str) -> str:
    """argparse type for --dtype: the float32|bfloat16|float16 vocabulary ('auto' has no meaning here)."""
    name = parse_dtype(text)
    if name == "auto":
        raise argparse.ArgumentTypeError("choose float32, bfloat16 or float16")
    return name


def main(argv: list[str] | None = None) -> int:
    """Entry point of `zhtw-export` (and `zhtw-pretrain export`): 0 done, 1 refused (one line), 2 usage."""
    parser = _parser()
    return run_main(parser.prog, parser, _run, argv, describe_os_error=lambda e: os_error_message(e, "."))


def _run(args: argparse.Namespace) -> None:
    meta = export(
        args.model,
        args.adapter,
        args.output,
        dtype=args.dtype,
        gguf=args.gguf,
        max_shard_size=args.max_shard_size,
        verify=args.verify,
        overwrite=args.overwrite,
        tokenizer_report=args.tokenizer_report,
        license=args.license,
        base_model_id=args.base_model_id,
        datasets=args.dataset,
        force=args.force,
        log=(lambda m: None) if args.quiet else print,
    )
    out = Path(args.output)
    gguf = (meta.get("gguf") or {}).get("file")
    print(f"exported model: {show_path(out)} (card {show_path(out / 'README.md')}, metadata "
          f"{show_path(out / EXPORT_METADATA)}{', GGUF ' + show_path(out / gguf) if gguf else ''})")
