"""Parameter counts and a peak GPU memory estimate for a training configuration, without building the model.

Works from a Llama-family ``config.json`` alone, so ``--dry-run`` answers "will a 7B run fit on my 24 GB
card?" on any machine. The estimate is of what PyTorch allocates (``torch.cuda.max_memory_allocated``);
the CUDA context and allocator fragmentation add roughly another 0.5–1.5 GB on a real card.

What is counted, in bytes (bf16 compute, AdamW with fp32 states):

- base linear layers: NF4 = 0.5 byte/parameter + block scales (fp32 per 64 weights, or 8-bit per 64 plus
  fp32 per 256 blocks with double quantisation); without quantisation the compute dtype;
- embedding and output head: fp32 when trained rows live inside them (full matrices, or peft's row layer:
  bf16 would round updates of lr 5e-5 away), compute dtype otherwise (the gather row path keeps its rows in
  a float32 parameter of their own); one output matrix when the weights are tied;
- trainable parameters (LoRA, new rows, full matrices, norms): fp32 weight + gradient + two AdamW states
  = 16 bytes each (12 for LoRA with bf16 optimizer states);
- new rows through peft's layer: a merged fp32 copy of each matrix per forward and, for the head, a
  full-matrix gradient per loss chunk; through the gather path: the head rows' gradient in the compute dtype
  and its fp32 copy before it is added to ``.grad`` (per loss chunk, never vocabulary-sized);
- activations with gradient checkpointing: every layer's input kept (in the residual dtype: fp32 when the
  embedding is fp32), plus one layer recomputed at a time (projections, MLP, norms in fp32, LoRA dropout
  copies); with offloading the layer inputs wait in CPU memory and one comes back at a time; without
  checkpointing every layer's;
- logits: one loss chunk's bf16 logits, fp32 copy and fp32 gradient (the whole sequence when unchunked).

`lever_effects` recomputes the estimate with each memory lever flipped, for the ``--dry-run`` table.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LEVERS",
    "PARAMETER_DEFINITION",
    "fitting_changes",
    "render_fitting_changes",
    "MemoryEstimate",
    "ModelShape",
    "estimate_memory",
    "fits",
    "lever_effects",
    "model_shape",
    "render_estimate",
    "render_levers",
]

GIB = 1024**3
# the one definition of the parameter counts printed by --dry-run, the training log and training_summary.json
PARAMETER_DEFINITION = (
    "trainable: parameters the optimizer updates (LoRA A and B, each trained embedding row as hidden_size "
    "values per matrix, trained norms); total: the base model's parameters, each weight once (tied matrices "
    "once, 4-bit weights unpacked), plus the LoRA matrices"
)
_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
_LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama-family decoder that memory depends on."""

    vocab_rows: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer of one decoder layer, by module name."""
        h, q, kv, i = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        )
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }


def model_shape(config: dict[str, Any] | str | Path) -> ModelShape:
    """Read a ModelShape from a config.json dict, file or model directory."""
    if not isinstance(config, dict):
        path = Path(config)
        config = json.loads((path / "config.json" if path.is_dir() else path).read_text(encoding="utf-8"))
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    return ModelShape(
        vocab_rows=int(config["vocab_size"]),
        hidden=hidden,
        intermediate=int(config["intermediate_size"]),
        layers=int(config["num_hidden_layers"]),
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        tied=bool(config.get("tie_word_embeddings", False)),
    )


@dataclass
class MemoryEstimate:
    """Parameter counts and the parts of the estimated peak, in bytes."""

    total_params: int
    trainable_params: int
    lora_params: int
    trainable_row_params: int
    parts: dict[str, float]

    @property
    def peak_bytes(self) -> float:
        return sum(self.parts.values())

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["parts_gib"] = {k: round(v / GIB, 3) for k, v in self.parts.items()}
        out["peak_gib"] = round(self.peak_gib, 3)
        return out


def _lora_targets(target_modules: list[str]) -> list[str]:
    if any(t in ("all-linear", "all_linear") for t in target_modules):
        return list(_LINEAR_NAMES)
    return [name for name in _LINEAR_NAMES if any(name == t or name.endswith(t) for t in target_modules)]


def estimate_memory(
    shape: ModelShape,
    *,
    block_size: int,
    micro_batch: int = 1,
    quantization: str = "nf4",
    double_quant: bool = True,
    compute_dtype: str = "bfloat16",
    lora_r: int = 32,
    lora_target_modules: list[str] | None = None,
    lora_dropout: float = 0.05,
    trainable_embeddings: str = "new_rows",
    new_rows: int = 0,
    trainable_norms: bool = False,
    gradient_checkpointing: bool = True,
    loss_chunk_tokens: int | None = 1024,
    trainable_rows_impl: str = "gather",
    offload_activations: bool = False,
    lora_optimizer_states: str = "float32",
) -> MemoryEstimate:
    """Estimate parameter counts and peak GPU memory of one training step (see the module docstring)."""
    s = shape
    cbytes = _DTYPE_BYTES[compute_dtype]
    linears = s.linear_shapes()
    base_linear = s.layers * sum(i * o for i, o in linears.values())
    n_mats = 1 if s.tied else 2
    embed_params = s.vocab_rows * s.hidden * n_mats
    norm_params = (2 * s.layers + 1) * s.hidden
    lora = s.layers * sum(
        lora_r * (i + o)
        for name, (i, o) in linears.items()
        if name in _lora_targets(lora_target_modules or ["all-linear"])
    )
    total = base_linear + embed_params + norm_params + lora
    if trainable_embeddings == "new_rows":
        rows = new_rows * s.hidden * n_mats
    elif trainable_embeddings == "full":
        rows = embed_params
    else:
        rows = 0
    norms = norm_params if trainable_norms else 0
    trainable = lora + rows + norms

    parts: dict[str, float] = {}
    if quantization == "nf4":
        scale = (1 / 64 + 4 / (64 * 256)) if double_quant else 4 / 64
        parts["base_linear"] = base_linear * (0.5 + scale)
    else:
        parts["base_linear"] = base_linear * cbytes
    gather = trainable_embeddings == "new_rows" and trainable_rows_impl == "gather"
    fp32_matrices = trainable_embeddings == "full" or (trainable_embeddings == "new_rows" and not gather)
    embed_bytes = 4 if fp32_matrices else cbytes
    parts["embed_head"] = embed_params * embed_bytes + norm_params * 4
    # fp32 weight + grad + AdamW exp_avg + exp_avg_sq (the LoRA states in bf16 when asked)
    lora_state = 4 if lora_optimizer_states == "bfloat16" else 8
    parts["trainable_states"] = (trainable - lora) * 16.0 + lora * (8.0 + lora_state)
    if gather:  # per loss chunk: the head rows' gradient in the compute dtype and its fp32 copy
        head_rows = new_rows * s.hidden
        parts["row_temps"] = head_rows * (4 + (cbytes if cbytes != 4 else 0))
    elif trainable_embeddings == "new_rows":  # merged copies of the matrices and the head's full gradient
        parts["row_merge_temps"] = embed_params * 4 + s.vocab_rows * s.hidden * 4
    elif trainable_embeddings == "full":  # modules_to_save keeps the frozen original beside the copy
        parts["row_merge_temps"] = 0.0

    tokens = micro_batch * block_size
    resid = 4 if fp32_matrices else cbytes  # residual stream dtype follows the embedding
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    n_targets = len(_lora_targets(lora_target_modules or ["all-linear"]))
    per_layer = tokens * (
        cbytes * (3 * s.hidden + q + 2 * kv + q + 4 * s.intermediate)  # norms out, q/k/v, attn out, MLP
        + 4 * 2 * s.hidden  # RMSNorm float32 upcasts
        + (cbytes * s.hidden * n_targets if lora_dropout > 0 else 0)  # LoRA dropout copies of inputs
        + 4 * lora_r * n_targets  # LoRA intermediates
    )
    if gradient_checkpointing:
        kept = 3 if offload_activations else s.layers + 2  # offloaded: one layer input back at a time
        parts["activations"] = tokens * s.hidden * resid * kept + 2 * per_layer
    else:
        parts["activations"] = per_layer * s.layers + tokens * s.hidden * resid * 2
    chunk = tokens if not loss_chunk_tokens else min(tokens, loss_chunk_tokens)
    parts["logits"] = chunk * s.vocab_rows * (cbytes + 4 + 4)
    # the largest dequantised weight during a 4-bit matmul, plus its gradient-side transpose
    biggest = max(i * o for i, o in linears.values())
    parts["dequant_temps"] = 2 * biggest * cbytes if quantization == "nf4" else 0.0
    return MemoryEstimate(
        total_params=total,
        trainable_params=trainable,
        lora_params=lora,
        trainable_row_params=rows,
        parts=parts,
    )


def render_estimate(est: MemoryEstimate, *, gpu_memory_gb: float | None = None, title: str = "") -> str:
    """A short human-readable report of an estimate."""
    lines = [title] if title else []
    lines.append(
        f"parameters: {est.total_params:,} total, {est.trainable_params:,} trainable "
        f"({100 * est.trainable_params / max(1, est.total_params):.2f}%: LoRA {est.lora_params:,}, "
        f"embedding rows {est.trainable_row_params:,})"
    )
    lines.append("estimated peak GPU memory (allocated by PyTorch):")
    for name, value in est.parts.items():
        lines.append(f"  {name:<18} {value / GIB:8.2f} GiB")
    lines.append(f"  {'total':<18} {est.peak_gib:8.2f} GiB")
    if gpu_memory_gb:
        verdict = "fits" if fits(est.peak_gib, gpu_memory_gb) else "does NOT fit"
        lines.append(
            f"with ~1 GiB of CUDA context and fragmentation this {verdict} on a {gpu_memory_gb:g} GB card."
        )
    return "\n".join(lines)


# (name, estimate_memory keyword, the lever's "on" value, its "off" value, the config option that sets it)
LEVERS: tuple[tuple[str, str, Any, Any, str], ...] = (
    ("gathered trainable rows", "trainable_rows_impl", "gather", "peft", "trainable_rows_impl"),
    ("chunked loss over the head", "loss_chunk_tokens", 1024, None, "loss_chunk_tokens"),
    ("activation checkpointing", "gradient_checkpointing", True, False, "activation_checkpointing"),
    ("offloaded checkpoints (CPU)", "offload_activations", True, False, "offload_activations"),
    ("bf16 LoRA optimizer states", "lora_optimizer_states", "bfloat16", "float32", "lora_optimizer_states"),
)


def lever_effects(shape: ModelShape, **settings: Any) -> list[dict[str, Any]]:
    """For each memory lever: whether `settings` use it and the estimated peak with it on and off (GiB)."""
    rows = []
    defaults = {k: p.default for k, p in inspect.signature(estimate_memory).parameters.items()}
    for name, key, on, off, option in LEVERS:
        current = settings.get(key, defaults[key])
        used = current == on if key != "loss_chunk_tokens" else bool(current)
        with_on = {**settings, key: on if key != "loss_chunk_tokens" or not current else current}
        if key == "offload_activations":  # offloading only exists with checkpointing
            with_on["gradient_checkpointing"] = True
        peak_on = estimate_memory(shape, **with_on).peak_gib
        peak_off = estimate_memory(shape, **{**settings, key: off}).peak_gib
        rows.append(
            {"lever": name, "option": option, "used": used, "peak_on_gib": peak_on, "peak_off_gib": peak_off}
        )
    return rows


def render_levers(effects: list[dict[str, Any]]) -> str:
    """The --dry-run table of memory levers: each one's estimated peak on and off, and what it saves."""
    lines = ["memory levers (estimated peak with the lever on / off):"]
    for e in effects:
        state = "on " if e["used"] else "off"
        saves = e["peak_off_gib"] - e["peak_on_gib"]
        lines.append(
            f"  [{state}] {e['lever']:<30} {e['peak_on_gib']:6.2f} / {e['peak_off_gib']:6.2f} GiB "
            f"(saves {saves:5.2f} GiB; option {e['option']})"
        )
    return "\n".join(lines)


CONTEXT_GIB = 1.0  # CUDA context and allocator fragmentation on top of what PyTorch allocates


def fits(peak_gib: float, gpu_memory_gb: float) -> bool:
    """Whether an estimated peak fits a card, leaving room for the CUDA context and fragmentation."""
    return peak_gib + CONTEXT_GIB <= gpu_memory_gb


def _halvings(settings: dict[str, Any], accumulation: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Candidate changes, cheapest first, each on top of the previous: (estimate kwargs, config options)."""
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = []
    micro, acc = int(settings.get("micro_batch", 1)), accumulation
    while micro > 1:  # smaller micro batch, more accumulation: the same effective batch, a little slower
        micro, acc = max(1, micro // 2), acc * 2
        steps.append(
            (
                {"micro_batch": micro},
                {"per_device_train_batch_size": micro, "gradient_accumulation_steps": acc},
            )
        )
    steps.append(({"gradient_checkpointing": True}, {"activation_checkpointing": "true"}))
    steps.append(({"lora_optimizer_states": "bfloat16"}, {"lora_optimizer_states": "bfloat16"}))
    steps.append(({"offload_activations": True}, {"offload_activations": "true"}))
    block = int(settings["block_size"])
    while block > 512:  # the last resort: shorter training context
        block //= 2
        steps.append(({"block_size": block}, {"block_size": block}))
    return steps


def fitting_changes(
    shape: ModelShape, settings: dict[str, Any], *, gpu_memory_gb: float, accumulation: int
) -> tuple[dict[str, Any], float] | None:
    """The fewest option changes (micro batch with accumulation, checkpointing, bf16 LoRA states, offloading,
    block size, in that order) whose estimate fits `gpu_memory_gb`: (options, peak GiB), or None when none does."""
    current = dict(settings)
    options: dict[str, Any] = {}
    for kwargs, opts in _halvings(settings, accumulation):
        if all(current.get(k) == v for k, v in kwargs.items()):
            continue  # already so
        current.update(kwargs)
        options.update(opts)
        peak = estimate_memory(shape, **current).peak_gib
        if fits(peak, gpu_memory_gb):
            return options, peak
    return None


def render_fitting_changes(found: tuple[dict[str, Any], float] | None, gpu_memory_gb: float) -> str:
    """The line --dry-run prints when the estimate does not fit: the change that would."""
    if found is None:
        return (
            f"no change of micro batch, checkpointing, optimizer states, offloading or block size fits a "
            f"{gpu_memory_gb:g} GB card; use a larger card or several (accelerate launch)."
        )
    options, peak = found
    flags = " ".join(f"--{k} {v}" for k, v in options.items())
    batch = (
        "a shorter block: fewer tokens per step" if "block_size" in options else "the same effective batch"
    )
    return f"to fit a {gpu_memory_gb:g} GB card: {flags}  (estimated peak {peak:.2f} GiB; {batch})"
