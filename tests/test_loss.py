"""Chunked causal-LM loss: equal to the plain float32 cross-entropy in value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zhtw.pretrain.loss import chunked_causal_lm_loss, liger_fused_available


def _plain_loss(hidden: torch.Tensor, head: torch.nn.Module, labels: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def _case(batch: int, seq: int, hidden: int, vocab: int, ignore_share: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, seq, hidden, generator=gen)
    head = torch.nn.Linear(hidden, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, hidden, generator=gen) * 0.1)
    labels = torch.randint(0, vocab, (batch, seq), generator=gen)
    labels[torch.rand(batch, seq, generator=gen) < ignore_share] = -100
    return h, head, labels


def _value_and_grads(loss_fn, h: torch.Tensor, head: torch.nn.Module, labels: torch.Tensor):
    h = h.clone().requires_grad_(True)
    head.zero_grad()
    loss = loss_fn(h, head, labels)
    loss.backward()
    return loss.detach(), h.grad.clone(), head.weight.grad.clone()


@pytest.mark.parametrize(
    ("batch", "seq", "chunk", "ignore_share"),
    [
        (1, 64, 1024, 0.0),  # one chunk
        (3, 37, 10, 0.3),  # batch > 1, chunk not dividing B*S, ignored labels
        (2, 50, 1, 0.5),  # one position per chunk
        (2, 33, 33, 0.0),  # chunk boundary = row boundary
    ],
)
def test_matches_plain_cross_entropy(batch: int, seq: int, chunk: int, ignore_share: float) -> None:
    h, head, labels = _case(batch, seq, hidden=48, vocab=211, ignore_share=ignore_share)
    ref = _value_and_grads(_plain_loss, h, head, labels)
    got = _value_and_grads(
        lambda x, m, y: chunked_causal_lm_loss(x, m, y, chunk_tokens=chunk), h, head, labels
    )
    assert got[0].dtype == torch.float32
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_bfloat16_hidden_states_give_float32_loss_of_upcast_logits() -> None:
    h, head, labels = _case(2, 40, hidden=64, vocab=128, ignore_share=0.1)
    head = head.to(torch.bfloat16)
    h = h.to(torch.bfloat16)
    got = chunked_causal_lm_loss(h, head, labels, chunk_tokens=16)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, _plain_loss(h, head, labels), rtol=1e-6, atol=1e-6)


def test_lora_style_head_and_trainable_hidden_get_gradients() -> None:
    """A head that is a composite module (frozen base + trainable low-rank update), as PEFT wraps lm_head."""

    class LowRankHead(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear, rank: int = 4) -> None:
            super().__init__()
            self.base = base.requires_grad_(False)
            self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) * 0.1)
            self.b = torch.nn.Parameter(torch.randn(base.out_features, rank) * 0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.base(x) + x @ self.a.T @ self.b.T

    h, base, labels = _case(2, 30, hidden=32, vocab=97, ignore_share=0.2)
    grads = []
    for fn in (_plain_loss, lambda x, m, y: chunked_causal_lm_loss(x, m, y, chunk_tokens=7)):
        head = LowRankHead(base)
        torch.manual_seed(1)
        head.a.data, head.b.data = torch.randn_like(head.a) * 0.1, torch.randn_like(head.b) * 0.1
        x = h.clone().requires_grad_(True)
        fn(x, head, labels).backward()
        assert base.weight.grad is None
        grads.append((x.grad, head.a.grad, head.b.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_backward_recomputes_chunk_logits_instead_of_storing_them() -> None:
    """Autograd keeps only chunk inputs, never a [chunk, V] tensor: count what the graph saves."""
    h, head, labels = _case(2, 64, hidden=16, vocab=1000, ignore_share=0.0)
    h.requires_grad_(True)
    saved: list[torch.Size] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        chunked_causal_lm_loss(h, head, labels, chunk_tokens=32)
    assert saved, "checkpointing saves the chunk inputs"
    assert all(1000 not in shape for shape in saved), saved

    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _plain_loss(h, head, labels)
    assert any(1000 in shape for shape in saved)  # the reference keeps full logits


def test_no_targets_gives_zero_not_nan() -> None:
    h, head, labels = _case(1, 8, hidden=8, vocab=16, ignore_share=0.0)
    labels[:] = -100
    h.requires_grad_(True)
    loss = chunked_causal_lm_loss(h, head, labels, chunk_tokens=3)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(h.grad) == 0


def test_num_items_in_batch_divides_the_summed_loss() -> None:
    h, head, labels = _case(2, 20, hidden=8, vocab=16, ignore_share=0.25)
    n = int((labels[:, 1:] != -100).sum())
    mean = chunked_causal_lm_loss(h, head, labels, chunk_tokens=6)
    summed = chunked_causal_lm_loss(h, head, labels, chunk_tokens=6, num_items_in_batch=3 * n)
    torch.testing.assert_close(summed * 3, mean)


def test_no_grad_evaluation_matches() -> None:
    h, head, labels = _case(2, 25, hidden=8, vocab=16, ignore_share=0.0)
    with torch.no_grad():
        got = chunked_causal_lm_loss(h, head, labels, chunk_tokens=4)
        torch.testing.assert_close(got, _plain_loss(h, head, labels), rtol=1e-6, atol=1e-6)


def test_bad_shapes_are_refused() -> None:
    h, head, labels = _case(1, 8, hidden=8, vocab=16, ignore_share=0.0)
    with pytest.raises(ValueError, match=r"\[B, S, H\]"):
        chunked_causal_lm_loss(h[0], head, labels)
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_causal_lm_loss(h, head, labels, chunk_tokens=0)


def test_liger_needs_cuda() -> None:
    if not torch.cuda.is_available():
        assert liger_fused_available() is False
    else:
        assert isinstance(liger_fused_available(), bool)
