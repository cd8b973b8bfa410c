"""Causal-LM cross-entropy that never holds full-sequence float32 logits.

With a 61k vocabulary, float32 logits cost 0.25 MB per token (and log-softmax and its gradient as much
again each): 6 GB at 8k tokens, more than the rest of a QLoRA step. `chunked_causal_lm_loss` runs the
output head and the loss on ``chunk_tokens`` positions at a time under activation checkpointing, so
forward and backward each hold one chunk's logits at once; backward recomputes them (one extra head
matmul per chunk). On CUDA with liger-kernel installed, its fused linear cross-entropy does the same
in Triton (`liger_fused_available`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["IGNORE_INDEX", "chunked_causal_lm_loss", "liger_fused_available"]

IGNORE_INDEX = -100


def _chunk_loss_sum(
    hidden: torch.Tensor, targets: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    logits = head(hidden).float()
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_causal_lm_loss(
    hidden_states: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    labels: torch.Tensor,
    chunk_tokens: int = 1024,
    *,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean next-token cross-entropy (float32) of ``head(hidden_states)`` against ``labels``.

    `hidden_states` ``[B, S, H]`` are the final hidden states (after the final norm); `head` maps
    ``[N, H]`` to ``[N, V]`` logits (the model's, possibly PEFT-wrapped, ``lm_head``); `labels`
    ``[B, S]`` are shifted here (position t predicts token t+1); ``-100`` is ignored. Equals
    ``F.cross_entropy(logits.float(), shifted labels)`` and its gradients, except that a batch with
    no target returns 0 instead of NaN. `num_items_in_batch` (the Trainer's count of targets over all
    accumulated micro-batches) replaces the local count as the divisor, as transformers' own loss does.
    """
    if hidden_states.dim() != 3 or labels.shape != hidden_states.shape[:2]:
        raise ValueError(
            f"expected hidden_states [B, S, H] and labels [B, S]; got {tuple(hidden_states.shape)} and "
            f"{tuple(labels.shape)}. Pass the model's last hidden state and the batch's labels."
        )
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive (got {chunk_tokens}); 1024 is a good default.")
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])  # a view when contiguous: no copy
    # shift by padding: the last position of each row has no next token
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).reshape(-1).to(hidden.device)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        end = start + chunk_tokens
        h, t = hidden[start:end], targets[start:end]
        if torch.is_grad_enabled():  # evaluation under no_grad needs no recomputation
            part = checkpoint(_chunk_loss_sum, h, t, head, use_reentrant=False)
        else:
            part = _chunk_loss_sum(h, t, head)
        total = total + part
    if num_items_in_batch is not None:
        divisor = torch.as_tensor(num_items_in_batch, device=total.device, dtype=torch.float32)
    else:
        divisor = (targets != IGNORE_INDEX).sum().to(torch.float32)
    return total / divisor.clamp(min=1)


def liger_fused_available() -> bool:
    """True when liger-kernel's fused linear cross-entropy can run: liger-kernel imports and CUDA is up."""
    if not torch.cuda.is_available():
        return False
    try:
        importlib.import_module("liger_kernel.transformers")
    except Exception:  # ImportError, or triton failing to initialise
        return False
    return True
