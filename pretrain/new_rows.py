"""Trainable new-token rows without full-matrix temporaries, offloaded activations and bf16 LoRA optimizer states.

Why: peft's ``trainable_token_indices`` layer merges its few trainable rows into a copy of the whole
vocabulary x hidden matrix on every forward (``index_copy``), and the output head's backward builds a
gradient of that whole copy: for Llama-2-7B with 61,440 rows that is three 1 GiB float32 matrices, and the
layer needs the embedding and head upcast to float32 so that small updates are not rounded away.

`RowGatherTokensLayer` is a peft ``TrainableTokensLayer`` (same parameters, same adapter files, same
``zhtw-export`` merge, same ``PeftModel.from_pretrained``) that computes differently:

- embedding: look the frozen rows up in the base matrix, gather the trainable rows from the float32 rows
  parameter and choose per position (``torch.where``); backward writes only the ``[rows, hidden]`` gradient;
- output head: the logits of the frozen vocabulary come from row slices of the base matrix (views, no copy),
  those of the trainable rows from the rows parameter, concatenated per loss chunk; backward gives the rows
  their ``[rows, hidden]`` gradient and never a vocabulary-sized one.

The frozen matrices therefore stay in the compute dtype (bf16 on GPU) and only the trainable rows are float32.
`use_row_gather` swaps the layers in after ``get_peft_model`` (before the optimizer exists).

Two further memory levers live here: `offloaded_activations` (saved tensors -- with activation checkpointing,
each decoder layer's input -- go to pinned CPU memory during forward and come back for backward, as unsloth
does) and `AdamWBF16States` (AdamW whose moment estimates are stored in bfloat16 with stochastic rounding for
the parameters chosen, the LoRA matrices; the weights stay float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from peft.utils.other import TrainableTokensWrapper
from torch import nn

__all__ = [
    "AdamWBF16States",
    "OffloadStats",
    "RowGatherTokensLayer",
    "embed_with_rows",
    "linear_with_rows",
    "offloaded_activations",
    "row_segments",
    "use_row_gather",
]

# (first token id, end token id, first row of the rows parameter or None for the base matrix)
Segment = tuple[int, int, int | None]


def row_segments(token_ids: list[int], vocab: int) -> list[Segment]:
    """Split ``range(vocab)`` into runs that come from the base matrix (row None) or from consecutive rows.

    ``token_ids[i]`` is the token whose row is ``rows[i]``; a contiguous range of new tokens gives at most three
    segments (frozen, trained, frozen).
    """
    pairs = sorted((int(t), i) for i, t in enumerate(token_ids))
    segments: list[Segment] = []
    cursor = 0
    for token, row in pairs:
        last = segments[-1] if segments else None
        if last and last[2] is not None and last[1] == token and last[2] + (last[1] - last[0]) == row:
            segments[-1] = (last[0], token + 1, last[2])
        else:
            if token > cursor:
                segments.append((cursor, token, None))
            segments.append((token, token + 1, row))
        cursor = token + 1
    if cursor < vocab:
        segments.append((cursor, vocab, None))
    return segments


def embed_with_rows(
    ids: torch.Tensor, weight: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Embedding of `ids` where token t uses ``rows[slots[t]]`` when ``slots[t] >= 0`` and ``weight[t]`` otherwise.

    The result has the dtype of the frozen `weight`; the gradient reaches `rows` only ([rows, hidden]).
    """
    out = F.embedding(ids, weight)
    slot = slots[ids]
    new = rows[slot.clamp(min=0)].to(out.dtype)
    return torch.where((slot >= 0).unsqueeze(-1), new, out)


def linear_with_rows(
    hidden: torch.Tensor, weight: torch.Tensor, segments: list[Segment], rows: torch.Tensor
) -> torch.Tensor:
    """``hidden @ W.T`` where W's trained rows come from `rows`: one matmul per segment, no merged matrix."""
    x = hidden.to(weight.dtype)
    parts = []
    for start, end, row in segments:
        w = weight[start:end] if row is None else rows[row : row + end - start].to(weight.dtype)
        parts.append(F.linear(x, w))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class RowGatherTokensLayer(TrainableTokensLayer):
    """peft's trainable-token layer computed by gathering rows (see the module docstring).

    Differences from the parent: the rows parameter is float32 whatever the base dtype; the copy of the
    original rows that only ``unmerge`` needs is taken when merging instead of being held all along.
    """

    def update_layer(
        self, adapter_name: str, config: Any = None, tied_adapter: Any = None, **kwargs: Any
    ) -> None:
        super().update_layer(adapter_name, config, tied_adapter, **kwargs)
        if tied_adapter is not None or adapter_name not in self.trainable_tokens_delta:
            return
        delta = self.trainable_tokens_delta[adapter_name]
        self.trainable_tokens_delta[adapter_name] = nn.Parameter(delta.detach().float(), requires_grad=True)
        self.trainable_tokens_original[adapter_name] = delta.new_empty(0)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        weight = self.get_base_layer().weight
        for name in adapter_names or self.active_adapters:
            if name in self.token_indices and name not in self.merged_adapters:
                index = torch.tensor(self.token_indices[name], device=weight.device)
                self.trainable_tokens_original[name] = weight.data[index].clone()
        super().merge(safe_merge, adapter_names)

    def _slots(self, name: str, vocab: int, device: torch.device) -> torch.Tensor:
        slots = torch.full((vocab,), -1, dtype=torch.long, device=device)
        ids = torch.tensor(self.token_indices[name], dtype=torch.long, device=device)
        slots[ids] = torch.arange(len(ids), device=device)
        return slots

    def forward_adapters(self, x: torch.Tensor, active_adapters: list[str], *args: Any, **kwargs: Any) -> Any:
        base = self.get_base_layer()
        if self.disable_adapters or self.merged or len(active_adapters) != 1:
            return super().forward_adapters(x, active_adapters, *args, **kwargs)
        name = active_adapters[0]
        rows = self.trainable_tokens_delta[name]
        if isinstance(base, nn.Embedding):
            result = embed_with_rows(x, base.weight, self._slots(name, base.num_embeddings, x.device), rows)
            scale = self._get_embed_scale()
            return result if scale is None else result * scale.to(result.dtype)
        if isinstance(base, nn.Linear) and base.bias is None:
            return linear_with_rows(
                x, base.weight, row_segments(self.token_indices[name], base.out_features), rows
            )
        return super().forward_adapters(x, active_adapters, *args, **kwargs)


def use_row_gather(model: nn.Module) -> int:
    """Replace every peft trainable-token layer of `model` by a `RowGatherTokensLayer`; return how many.

    Call it right after ``get_peft_model`` and before the optimizer is built: the new layers own new
    parameters (float32 copies of the current rows). Tied layers (a tied output head) are rebuilt after the
    layer they share their rows with.
    """
    wrappers = [m for m in model.modules() if isinstance(m, TrainableTokensWrapper)]
    wrappers.sort(key=lambda w: w.token_adapter.tied_adapter is not None)
    replaced: dict[int, RowGatherTokensLayer] = {}
    for wrapper in wrappers:
        old = wrapper.token_adapter
        tied = replaced[id(old.tied_adapter)] if old.tied_adapter is not None else None
        names = list(old.token_indices)
        new = RowGatherTokensLayer(old.get_base_layer(), names[0] if names else "default", tied_adapter=tied)
        for name in names:
            new.update_layer(name, token_indices=list(old.token_indices[name]), tied_adapter=tied)
            if tied is None:
                with torch.no_grad():
                    new.trainable_tokens_delta[name].copy_(old.trainable_tokens_delta[name])
        new.set_adapter(old.active_adapters)
        wrapper.token_adapter = new
        replaced[id(old)] = new
    return len(replaced)


# --------------------------------------------------------------------------------------------------------------
# offloaded activations


@dataclass
class OffloadStats:
    """What `offloaded_activations` packed during one forward: tensors and bytes moved (or, on CPU, kept)."""

    tensors: int = 0
    bytes: int = 0


@contextlib.contextmanager
def offloaded_activations(min_bytes: int = 1 << 20) -> Iterator[OffloadStats]:
    """Send tensors autograd saves during the block to pinned CPU memory; bring them back for backward.

    With non-reentrant activation checkpointing the tensors saved outside the checkpointed layers are each
    layer's input (and a few at the model's ends), so GPU memory holds one recomputed layer instead of every
    layer's input. Parameters and tensors under `min_bytes` stay where they are. On a CPU tensor the hook is a
    no-op that still counts, which is what the tests measure.
    """
    stats = OffloadStats()

    def pack(t: torch.Tensor) -> Any:
        nbytes = t.numel() * t.element_size()
        if isinstance(t, nn.Parameter) or nbytes < min_bytes:
            return t
        stats.tensors += 1
        stats.bytes += nbytes
        if t.device.type == "cpu":
            return t
        host = torch.empty(t.size(), dtype=t.dtype, layout=t.layout, pin_memory=True)
        host.copy_(t, non_blocking=True)
        return (t.device, host)

    def unpack(packed: Any) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        device, host = packed
        return host.to(device, non_blocking=True)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield stats


# --------------------------------------------------------------------------------------------------------------
# AdamW with bfloat16 moment estimates


def _to_bf16_stochastic(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Round float32 `x` to bfloat16 stochastically (unbiased): plain rounding would freeze ``v * 0.999``."""
    bits = x.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=x.device, generator=generator)
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)


class AdamWBF16States(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias correction, as ``torch.optim.AdamW``) storing ``exp_avg`` and
    ``exp_avg_sq`` in bfloat16 for parameter groups with ``bf16_states=True`` (stochastic rounding keeps the
    moving averages unbiased); other groups keep float32 states. The update itself is computed in float32."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        bf16_states: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "bf16_states": bf16_states,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        low = group["bf16_states"]
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            dtype = torch.bfloat16 if low else torch.float32
            state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
        state["step"] += 1
        step = float(state["step"])
        grad = p.grad.float()
        m = state["exp_avg"].float().lerp_(grad, 1 - beta1)
        v = state["exp_avg_sq"].float().mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (v / (1 - beta2**step)).sqrt_().add_(group["eps"])
        update = (m / (1 - beta1**step)).div_(denom)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(update.to(p.dtype), alpha=-group["lr"])
        store = _to_bf16_stochastic if low else (lambda t: t)
        state["exp_avg"] = store(m)
        state["exp_avg_sq"] = store(v)
