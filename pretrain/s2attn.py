"""S²-Attn (LongLoRA's shifted short attention) as a transformers attention implementation.

Training a long context with full attention costs O(S²); S²-Attn splits the sequence into groups of
G = ratio × S tokens and lets half of the heads attend causally inside the groups [0,G), [G,2G), …
and the other half inside groups shifted by G/2, so information still flows between neighbouring
groups. Evaluation and generation use ordinary full causal attention, so the trained model is a
plain Llama/Mistral model.

Integration goes only through transformers' extension points: an attention function registered with
``AttentionInterface`` and transformers' own ``sdpa_mask`` registered with ``AttentionMaskInterface``
under the same name (without a mask function transformers silently drops the padding mask).

Usage::

    from zhtw.pretrain.s2attn import enable_s2_attention, disable_s2_attention
    enable_s2_attention(model)                  # Llama/Mistral, PEFT-wrapped or 4-bit: in place
    model.train(); loss = model(**batch).loss   # S²-Attn in training mode
    disable_s2_attention(model)                 # back to the previous implementation

or by name, after ``import zhtw.pretrain.s2attn``::

    AutoModelForCausalLM.from_pretrained(path, attn_implementation="s2attn")   # noleak, ratio 1/4
    AutoModelForCausalLM.from_pretrained(path, attn_implementation="s2attn_roll")

Group size: G = floor(ratio × S) clamped to [1, S] (S: the padded length of the batch), the shift is
floor(G / 2). A length that is not a multiple of G ends with a shorter, clipped group.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = [
    "DEFAULT_NAME",
    "ROLL_NAME",
    "S2AttentionError",
    "UnsupportedModelError",
    "attention_name",
    "disable_s2_attention",
    "enable_s2_attention",
    "group_size",
    "is_s2_attention",
    "register_s2_attention",
    "s2_attention_forward",
]

Variant = Literal["noleak", "roll"]
VARIANTS: tuple[str, ...] = ("noleak", "roll")
SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("llama", "mistral")
DEFAULT_RATIO = 0.25
NAME_PREFIX = "s2attn"
DEFAULT_NAME = "s2attn"  # variant="noleak", group_ratio=0.25, shift on
ROLL_NAME = "s2attn_roll"  # variant="roll", group_ratio=0.25, shift on
_PREVIOUS_ATTR = "_zhtw_s2attn_previous"

# Every name this module registered, with its settings: (group_ratio, variant, shift).
_REGISTERED: dict[str, tuple[float, str, bool]] = {}


class S2AttentionError(ValueError):
    """Invalid S²-Attn settings or input."""


class UnsupportedModelError(S2AttentionError):
    """The model is not one S²-Attn is built and tested for."""


# ---------------------------------------------------------------------------------------------------
# Settings and names


def _check_settings(group_ratio: float, variant: str, shift: bool) -> float:
    if variant not in VARIANTS:
        raise S2AttentionError(
            f"variant={variant!r} is unknown: use one of {VARIANTS} ('noleak' is the default)."
        )
    if isinstance(group_ratio, bool) or not isinstance(group_ratio, (int, float)):
        raise S2AttentionError(
            f"group_ratio must be a number in (0, 1], got {group_ratio!r}; LongLoRA uses 0.25."
        )
    ratio = float(group_ratio)
    if not (0.0 < ratio <= 1.0) or math.isnan(ratio):
        raise S2AttentionError(f"group_ratio must be in (0, 1], got {group_ratio!r}; LongLoRA uses 0.25.")
    if not isinstance(shift, bool):
        raise S2AttentionError(f"shift must be True or False, got {shift!r}.")
    return ratio


def group_size(seq_len: int, group_ratio: float) -> int:
    """The group size G used for a sequence of ``seq_len`` tokens: floor(ratio × S), at least 1, at most S.

    A tiny tolerance keeps ratios such as 0.29 × 100 (= 28.999…96 in floating point) at the intended 29.
    """
    if seq_len < 1:
        raise S2AttentionError(f"seq_len must be positive, got {seq_len}.")
    return min(seq_len, max(1, math.floor(group_ratio * seq_len + 1e-6)))


def attention_name(
    group_ratio: float = DEFAULT_RATIO, variant: Variant = "noleak", shift: bool = True
) -> str:
    """The ``attn_implementation`` name for these settings (registered or not).

    "s2attn" and "s2attn_roll" are the ratio-1/4 defaults; other settings get names such as
    "s2attn_noleak_r0.125" or "s2attn_noleak_noshift_r1.0".
    """
    ratio = _check_settings(group_ratio, variant, shift)
    if ratio == DEFAULT_RATIO and shift:
        return DEFAULT_NAME if variant == "noleak" else ROLL_NAME
    return f"{NAME_PREFIX}_{variant}{'' if shift else '_noshift'}_r{ratio!r}"


def register_s2_attention(
    group_ratio: float = DEFAULT_RATIO, variant: Variant = "noleak", shift: bool = True
) -> str:
    """Register S²-Attn with these settings in transformers' attention and mask interfaces; return its name.

    Idempotent. Call it before ``from_pretrained(..., attn_implementation=name)`` for non-default settings.
    """
    name = attention_name(group_ratio, variant, shift)
    if name not in _REGISTERED:
        ratio = float(group_ratio)
        fn = functools.partial(s2_attention_forward, group_ratio=ratio, variant=variant, shift=shift)
        functools.update_wrapper(fn, s2_attention_forward)
        AttentionInterface.register(name, fn)
        AttentionMaskInterface.register(name, sdpa_mask)
        _REGISTERED[name] = (ratio, variant, shift)
    return name


def is_s2_attention(name: str | None) -> bool:
    """Whether ``name`` is an attention implementation registered by this module."""
    return name in _REGISTERED


# ---------------------------------------------------------------------------------------------------
# The attention function


@dataclass(frozen=True)
class _KVShare:
    """Stand-in for the attention module when key/value heads were already repeated to the query heads."""

    layer_idx: int | None
    num_key_value_groups: int = 1
    is_causal: bool = True


def s2_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    *,
    group_ratio: float = DEFAULT_RATIO,
    variant: str = "noleak",
    shift: bool = True,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Shifted short attention in training mode; transformers' sdpa attention otherwise.

    Takes query ``[B,H,S,D]``, key/value ``[B,KVH,S,D]`` (after RoPE) and the boolean ``[B,1,S,S]`` mask
    from ``sdpa_mask`` (``None`` for plain causal), returns ``([B,S,H,D], None)`` like every
    transformers attention function. The first H//2 heads use groups [0,G), [G,2G), …; the others use
    the shifted groups. With a mask (padding, packed sequences, sliding window), ``noleak`` keeps exactly
    the mask's allowed pairs inside each group; ``roll`` keeps only its key-padding part.
    """
    if variant not in VARIANTS:
        raise S2AttentionError(f"variant={variant!r} is unknown: use one of {VARIANTS}.")
    q_len, kv_len = query.shape[2], key.shape[2]
    if not module.training or q_len != kv_len or q_len == 1:
        # eval, generation with a cache, single tokens: ordinary full causal attention
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if attention_mask is not None and attention_mask.ndim != 4:
        raise S2AttentionError(
            f"S²-Attn expects the 4D mask built by transformers' sdpa_mask, got shape {tuple(attention_mask.shape)}; "
            "load the model with attn_implementation='s2attn' or call enable_s2_attention(model)."
        )

    n_heads = query.shape[1]
    rep = getattr(module, "num_key_value_groups", n_heads // key.shape[1])
    G = group_size(q_len, group_ratio)
    half = G // 2
    if not shift or half == 0 or n_heads < 2:
        heads = [(module, query, key, value, attention_mask, False)]
    else:
        heads = _head_halves(module, query, key, value, attention_mask, rep)

    outs = []
    for attn_module, q, k, v, mask, shifted in heads:
        if not shifted:
            out = _grouped(attn_module, q, k, v, mask, 0, G, dropout, scaling)
        elif variant == "noleak":
            out = _grouped(attn_module, q, k, v, mask, half, G, dropout, scaling)
        else:  # roll: the paper's pseudocode, leaks the last half group into the first
            q, k, v = (torch.roll(t, -half, dims=2) for t in (q, k, v))
            out = _grouped(attn_module, q, k, v, _rolled_causal_mask(mask, half), 0, G, dropout, scaling)
            out = torch.roll(out, half, dims=1)
        outs.append(out)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out, None


def _head_halves(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    rep: int,
) -> list[tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, bool]]:
    """(module, q, k, v, mask, shifted) for heads [0,H//2) and [H//2,H), each with the KV heads it uses.

    One ``split`` per tensor rather than slices: each slice's backward would allocate and add a
    full-size zero gradient.
    """
    n_heads = query.shape[1]
    sizes = [n_heads // 2, n_heads - n_heads // 2]
    qs = query.split(sizes, dim=1)
    if sizes[0] % rep == 0:  # each half owns whole KV heads (grouped-query attention)
        kv_sizes = [sizes[0] // rep, sizes[1] // rep]
        ks, vs, mods = key.split(kv_sizes, dim=1), value.split(kv_sizes, dim=1), (module, module)
    else:  # a KV head is shared by both halves (e.g. a single KV head): repeat it, then split
        ks, vs = repeat_kv(key, rep).split(sizes, dim=1), repeat_kv(value, rep).split(sizes, dim=1)
        share = _KVShare(layer_idx=getattr(module, "layer_idx", None))
        mods = (share, share)
    if mask is None or mask.shape[1] == 1:
        masks = (mask, mask)
    else:
        masks = mask.split(sizes, dim=1)
    return [(mods[i], qs[i], ks[i], vs[i], masks[i], i == 1) for i in range(2)]


def _rolled_causal_mask(mask: torch.Tensor | None, half: int) -> torch.Tensor | None:
    """Causal mask in rolled coordinates that keeps only the key padding of ``mask`` (the roll variant)."""
    if mask is None:
        return None
    diag = torch.diagonal(mask[:, 0], dim1=-2, dim2=-1)  # a key is valid iff it may attend to itself
    valid = diag if diag.dtype == torch.bool else diag > torch.finfo(diag.dtype).min / 2
    valid = torch.roll(valid, -half, dims=-1)
    seq = valid.shape[-1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=valid.device).tril()
    return causal[None, None] & valid[:, None, None, :]


def _grouped(
    module: Any,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    start: int,
    G: int,
    dropout: float,
    scaling: float | None,
) -> torch.Tensor:
    """Causal attention inside the segments [0,start), [start,start+G), …, the last one clipped.

    Whole groups go into the batch dimension of one sdpa call; the leading and trailing partial
    segments get one call each. Returns ``[B,S,H,D]``.
    """
    seq = q.shape[2]
    n_full = (seq - start) // G
    tail = seq - start - n_full * G
    spans = [(length, n) for length, n in ((start, 1), (n_full * G, n_full), (tail, 1)) if length > 0]
    if len(spans) == 1:
        return _attend(module, q, k, v, mask, spans[0][1], dropout, scaling)
    sizes = [length for length, _ in spans]
    parts = zip(q.split(sizes, dim=2), k.split(sizes, dim=2), v.split(sizes, dim=2))
    pieces, offset = [], 0
    for (length, n), (qp, kp, vp) in zip(spans, parts):
        block = None if mask is None else mask[:, :, offset : offset + length, offset : offset + length]
        pieces.append(_attend(module, qp, kp, vp, block, n, dropout, scaling))
        offset += length
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)


def _attend(
    module: Any,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    n: int,
    dropout: float,
    scaling: float | None,
) -> torch.Tensor:
    """Causal attention inside each of ``n`` equal consecutive groups of ``[B,H,n*L,D]``; returns ``[B,n*L,H,D]``."""
    batch, length = q.shape[0], q.shape[2] // n

    def fold(t: torch.Tensor) -> torch.Tensor:  # [B,H,n*L,D] -> [B*n,H,L,D]
        return t if n == 1 else t.unflatten(2, (n, length)).transpose(1, 2).flatten(0, 1)

    if mask is not None and n > 1:  # the n diagonal LxL blocks: [B,h,n,L,n,L] -> [B*n,h,L,L]
        mask = mask.unflatten(3, (n, length)).unflatten(2, (n, length))
        mask = torch.diagonal(mask, dim1=2, dim2=4).permute(0, 4, 1, 2, 3).flatten(0, 1)
    out, _ = sdpa_attention_forward(
        module, fold(q), fold(k), fold(v), mask, dropout=dropout, scaling=scaling, is_causal=True
    )
    return out if n == 1 else out.unflatten(0, (batch, n)).flatten(1, 2)


# ---------------------------------------------------------------------------------------------------
# Switching a loaded model


def _transformers_model(model: torch.nn.Module) -> PreTrainedModel:
    """The transformers model inside ``model`` (unwrapping PEFT), checked to be a supported family."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(base, PreTrainedModel):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a transformers model; pass the model returned by "
            "AutoModelForCausalLM.from_pretrained (or peft.get_peft_model)."
        )
    model_type = getattr(base.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"S²-Attn supports model types {SUPPORTED_MODEL_TYPES}, got {model_type!r}; train this model with "
            "full attention (attn_implementation='sdpa')."
        )
    return base


def _own_config(base: PreTrainedModel) -> None:
    """Give ``base`` a config object of its own.

    ``set_attn_implementation`` writes into the config, and models built from one config object share it,
    so switching one model would silently switch the others.
    """
    old = base.config
    new = copy.copy(old)
    for sub in base.modules():
        if getattr(sub, "config", None) is old:
            sub.config = new


def enable_s2_attention(
    model: torch.nn.Module,
    group_ratio: float = DEFAULT_RATIO,
    variant: Variant = "noleak",
    *,
    shift: bool = True,
) -> str:
    """Switch a loaded Llama/Mistral model (plain, PEFT-wrapped or 4-bit) to S²-Attn in place.

    ``variant="noleak"`` never lets a token see a later one; ``variant="roll"`` is the paper's pseudocode
    and lets the first G/2 tokens see the last G/2 (for comparison only). ``shift=False`` disables the
    shifted half (every head uses groups [0,G), …), LongLoRA's ablation. Only training mode uses it.
    Returns the registered ``attn_implementation`` name.
    """
    if tuple(int(x) for x in torch.__version__.split(".")[:2]) < (2, 5):
        raise S2AttentionError(
            f"S²-Attn needs torch >= 2.5 (fully padded groups must give zeros, not NaN), found {torch.__version__}; "
            "upgrade torch."
        )
    name = register_s2_attention(group_ratio, variant, shift)
    base = _transformers_model(model)
    current = base.config._attn_implementation
    if not is_s2_attention(current):
        setattr(base, _PREVIOUS_ATTR, current)
    _own_config(base)
    base.set_attn_implementation(name)
    return name


def disable_s2_attention(model: torch.nn.Module) -> str:
    """Switch the model back to the implementation it had before ``enable_s2_attention`` ("sdpa" if unknown).

    A model that does not use S²-Attn is left as it is. Returns the implementation now in use.
    """
    base = _transformers_model(model)
    current = base.config._attn_implementation
    if not is_s2_attention(current):
        return current
    previous = getattr(base, _PREVIOUS_ATTR, None) or "sdpa"
    _own_config(base)
    base.set_attn_implementation(previous)
    if hasattr(base, _PREVIOUS_ATTR):
        delattr(base, _PREVIOUS_ATTR)
    return base.config._attn_implementation


register_s2_attention(DEFAULT_RATIO, "noleak", True)
register_s2_attention(DEFAULT_RATIO, "roll", True)
