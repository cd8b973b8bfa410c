"""Initialisation of the new embedding and output-head rows: a registry of methods, name -> function.

Why it matters: at step 0 a new piece should cost nothing. Its output row decides how much probability it takes
(from English too: every softmax is shared), its input row what the model believes after reading it. On a
byte-fallback base (Llama-2) a new CJK piece's sub-tokens are UTF-8 bytes shared by thousands of characters, so
their mean (`mean-subtoken`) says little and, as an output row, steals probability mass everywhere.

`distill` (the default) makes both rows of an untied model imitate the base reading the piece's own sub-token
sequence s1..sk:
* output row = row(s1) + c·b, where c = mean log p(s2..sk | context, s1) of the base over a few contexts and b
  is the least-squares direction with b·h ≈ 1 for the base's final hidden states h (sequences sampled from the
  base itself): the new piece's logit becomes ≈ logit(s1) + log p(s2..sk | s1), the base's log-probability of
  the whole sequence up to the normaliser. Where s1 is unlikely (a CJK byte after English) the piece is too.
* input row = learnt (Adam, a few steps, the model frozen) so that the final hidden state after
  [context, piece] matches the base's after [context, s1..sk] (cf. "Token Distillation", arXiv 2505.20133),
  starting from the last sub-token's row.
The contexts of both are short prefixes made of other new pieces' sub-tokens (text in the new pieces' language),
reused as a KV cache. Everything runs in batches of new pieces; no full-vocabulary temporary is larger than
[batch x prefixes x piece length, vocabulary], so it fits a 7B model on one GPU. A tied model keeps the
mean-subtoken rows (one row cannot be both the distilled input and the sequence-probability output).

Measured on zh-tiny with a 6k-piece `zhtw-tok build` extension at step 0 (wiki_drcd, stdlib docstrings):
zh-TW bits/char vs the base / English KL nats per token: distill 1.11x / 0.011 (75 s on one CPU core),
mean-subtoken 1.14x / 0.33, random 1.07x / 0.84, mean 1.29x / 0.015. The issue's targets (within 2%, KL ≤ 1e-3)
are not met: the old rows keep the probability the base gave the byte sequences a new piece now replaces, and
pieces that start with an ASCII sub-token ('(一)', '▁的') borrow its high English probability.

Every method leaves rows below n_base bit-identical, keeps the dtype, writes finite values and is seeded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zhtw.common.errors import ZhtwError

__all__ = [
    "DEFAULT_INIT",
    "INITS",
    "INIT_METHODS",
    "DistillSettings",
    "InitError",
    "InitMethod",
    "initialise_new_rows",
]

RANDOM_SEED = 0


class InitError(ZhtwError):
    """An initialisation method cannot run on these inputs; the message says what to change."""


@dataclass(frozen=True)
class Rows:
    """What a method initialises: the resized model, where the new pieces start, their base sub-token ids."""

    model: Any
    n_base: int
    subtokens: Sequence[Sequence[int]]  # one list per new piece; empty lists when the method needs none
    tied: bool
    generator: Any  # torch.Generator, seeded


@dataclass(frozen=True)
class InitMethod:
    """A registered method: `run(rows)` overwrites rows n_base.. of the input (and untied output) matrix."""

    name: str
    run: Callable[[Rows], None]
    needs_subtokens: bool
    help: str


# --------------------------------------------------------------------------------------------------------------
# simple methods


def _mean_of_groups(base_rows: Any, groups: Sequence[Sequence[int]]) -> Any:
    """Row k of the result = mean of base_rows[groups[k]], computed in float32."""
    import torch

    flat = torch.tensor([i for g in groups for i in g], dtype=torch.long)
    owner = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor([len(g) for g in groups]))
    sums = torch.zeros(len(groups), base_rows.shape[1], dtype=torch.float32)
    sums.index_add_(0, owner, base_rows.float()[flat])
    return sums / torch.tensor([len(g) for g in groups], dtype=torch.float32)[:, None]


def _matrices(r: Rows) -> list[Any]:
    """The weight tensors to fill: the input embedding, and the output head when it is not tied to it."""
    mats = [r.model.get_input_embeddings().weight]
    if not r.tied:
        mats.append(r.model.get_output_embeddings().weight)
    return mats


def _fill(weight: Any, n_base: int, new_rows: Any | None) -> None:
    """Rows n_base.. of `weight` = new_rows for the new pieces, the mean base row for the rest (pad rows)."""
    import torch

    with torch.no_grad():
        mean = weight[:n_base].float().mean(dim=0, keepdim=True)
        fresh = mean.expand(weight.shape[0] - n_base, -1).clone()
        if new_rows is not None and len(new_rows):
            fresh[: len(new_rows)] = new_rows
        weight[n_base:] = fresh.to(weight.dtype)


def _init_mean(r: Rows) -> None:
    for w in _matrices(r):
        _fill(w, r.n_base, None)


def _init_mean_subtoken(r: Rows) -> None:
    for w in _matrices(r):
        _fill(w, r.n_base, _mean_of_groups(w[: r.n_base], r.subtokens) if r.subtokens else None)


def _init_random(r: Rows) -> None:
    import torch

    std = float(getattr(r.model.config, "initializer_range", 0.02))
    for w in _matrices(r):
        fresh = torch.empty(w.shape[0] - r.n_base, w.shape[1], dtype=torch.float32)
        fresh.normal_(0.0, std, generator=r.generator)
        with torch.no_grad():
            w[r.n_base :] = fresh.to(w.dtype)


# --------------------------------------------------------------------------------------------------------------
# distillation


@dataclass(frozen=True)
class DistillSettings:
    """Sizes of the `distill` method (defaults: about a minute on one CPU core for zh-tiny and 6k pieces)."""

    contexts: int = 16  # sequences sampled from the base; their hidden states fit the direction b
    context_length: int = 32
    prefixes: int = 2  # contexts each piece is distilled in, made of other new pieces' sub-tokens
    prefix_length: int = 8  # tokens per prefix, BOS included
    steps: int = 10  # Adam steps per batch of input rows
    lr: float = 0.1  # Adam learning rate, in units of the mean absolute base embedding entry
    batch: int = 512  # new pieces per batch
    ridge: float = 1e-3  # ridge penalty when fitting b, relative to the mean diagonal of the Gram matrix


def _frozen(model: Any) -> list[bool]:
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    return flags


def _unfreeze(model: Any, flags: list[bool]) -> None:
    for p, f in zip(model.parameters(), flags):
        p.requires_grad_(f)


def _body(model: Any) -> Any:
    return getattr(model, model.base_model_prefix)


def _start_id(model: Any) -> int:
    bos = model.config.bos_token_id
    bos = model.config.eos_token_id if bos is None else bos
    return int(bos if bos is not None else 0)


def _sample_contexts(r: Rows, s: DistillSettings) -> Any:
    """`contexts` sequences of `context_length` ids sampled from the base (old ids only), each starting with BOS."""
    import torch

    device = next(r.model.parameters()).device
    ids = torch.full((s.contexts, 1), _start_id(r.model), dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(RANDOM_SEED)
    with torch.no_grad():
        for _ in range(s.context_length - 1):
            logits = r.model(input_ids=ids).logits[:, -1, : r.n_base].float().cpu()
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)
            ids = torch.cat([ids, nxt.to(device)], dim=1)
    return ids


def _unit_direction(model: Any, contexts: Any, ridge: float) -> Any:
    """b with b·h ≈ 1 for the base's final hidden states h of the contexts (ridge least squares, float32)."""
    import torch

    with torch.no_grad():
        h = _body(model)(input_ids=contexts).last_hidden_state
    h = h.reshape(-1, h.shape[-1]).float().cpu()
    gram = h.T @ h
    lam = ridge * float(gram.diagonal().mean())
    return torch.linalg.solve(gram + lam * torch.eye(gram.shape[0]), h.T @ torch.ones(h.shape[0]))


def _piece_prefixes(r: Rows, s: DistillSettings) -> Any:
    """Contexts in the language of the new pieces: BOS, then the sub-tokens of randomly drawn new pieces."""
    import torch

    out = []
    for _ in range(s.prefixes):
        ids = [_start_id(r.model)]
        while len(ids) < s.prefix_length:
            ids += r.subtokens[int(torch.randint(len(r.subtokens), (1,), generator=r.generator))]
        out.append(ids[: s.prefix_length])
    return torch.tensor(out, device=next(r.model.parameters()).device)


def _cache_kwarg(body: Any) -> str:
    """transformers ≥ 5.2x calls the KV cache argument `cache`; earlier 5.x releases `past_key_values`."""
    return "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"


def _prefix_cache(body: Any, prefixes: Any, repeat: int) -> Any:
    """A fresh KV cache of the prefixes, each repeated `repeat` times (prefix-major rows: j * repeat + i).

    Fresh for every forward pass: a forward appends to the cache, and cropping it back is not stable across
    transformers 5.x releases. The prefixes are a few dozen tokens, so recomputing them costs little."""
    import torch

    with torch.no_grad():
        out = body(input_ids=prefixes, use_cache=True)
    cache = out.cache if "cache" in out else out.past_key_values
    cache.batch_repeat_interleave(repeat)
    return cache


def _teacher(model: Any, prefixes: Any, seqs: Sequence[Sequence[int]], n_base: int) -> tuple[Any, Any]:
    """Per (prefix, piece) row: the base's final hidden state after [prefix, s1..sk]; per piece: the mean over
    prefixes of log p(s2..sk | prefix, s1)."""
    import torch

    body, head = _body(model), model.get_output_embeddings()
    device = next(model.parameters()).device
    n, (p, lp) = len(seqs), prefixes.shape
    cache = _prefix_cache(body, prefixes, n)
    k = max(len(x) for x in seqs)
    ids = torch.zeros(n, k, dtype=torch.long)
    lengths = torch.tensor([len(x) for x in seqs])
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = torch.tensor(list(seq))
    ids, lengths = ids.repeat(p, 1), lengths.repeat(p)
    mask = torch.cat(
        [torch.ones(len(ids), lp, dtype=torch.long), (torch.arange(k)[None] < lengths[:, None]).long()], 1
    )
    with torch.no_grad():
        hidden = body(
            input_ids=ids.to(device), attention_mask=mask.to(device), **{_cache_kwarg(body): cache}
        ).last_hidden_state
        last = hidden[torch.arange(len(ids), device=device), (lengths - 1).to(device)].float()
        tail = torch.zeros(len(ids))
        for pos in range(k - 1):  # hidden at pos (after s_{pos+1}) predicts ids[:, pos + 1]
            live = (lengths > pos + 1).nonzero().flatten()
            if len(live) == 0:
                break
            logp = torch.log_softmax(head(hidden[live.to(device), pos]).float()[:, :n_base], dim=-1).cpu()
            tail[live] += logp.gather(1, ids[live, pos + 1][:, None]).squeeze(1)
    return last, tail.reshape(p, n).mean(0)


def _distil_inputs(
    model: Any, prefixes: Any, start: Any, target: Any, s: DistillSettings, scale: float
) -> Any:
    """Input rows (one per piece, from `start`) such that the final hidden state after [prefix, row] matches
    `target` (prefix-major rows); Adam on the rows only, the model frozen, the prefixes as a KV cache."""
    import torch

    body = _body(model)
    device, dtype = next(model.parameters()).device, model.get_input_embeddings().weight.dtype
    p, lp = prefixes.shape
    rows = start.clone().to(device=device, dtype=torch.float32).requires_grad_(True)
    opt = torch.optim.Adam([rows], lr=s.lr * scale)
    mask = torch.ones(len(target), lp + 1, dtype=torch.long, device=device)
    target = target.to(device)
    kw = _cache_kwarg(body)
    for _ in range(s.steps):
        x = rows.repeat(p, 1)[:, None, :].to(dtype)
        cache = _prefix_cache(body, prefixes, len(start))
        h = body(inputs_embeds=x, attention_mask=mask, **{kw: cache}).last_hidden_state[:, -1].float()
        loss = torch.nn.functional.mse_loss(h, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rows.detach().cpu()


def run_distill(r: Rows, settings: DistillSettings = DistillSettings()) -> None:
    """The `distill` method (see the module docstring). A tied model keeps the mean-subtoken rows: one row
    cannot be both the distilled input and the sequence-probability output."""
    import torch

    _init_mean_subtoken(r)  # pad rows (and a tied model's rows) keep the mean-subtoken values
    if not r.subtokens or r.tied:
        return
    model, s = r.model, settings
    flags = _frozen(model)
    try:
        b = _unit_direction(model, _sample_contexts(r, s), s.ridge)
        prefixes = _piece_prefixes(r, s)
        emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        scale = float(emb[: r.n_base].float().abs().mean())
        for lo in range(0, len(r.subtokens), s.batch):
            seqs = r.subtokens[lo : lo + s.batch]
            target, tail = _teacher(model, prefixes, seqs, r.n_base)
            ids = slice(r.n_base + lo, r.n_base + lo + len(seqs))
            last = emb[torch.tensor([seq[-1] for seq in seqs], device=emb.device)].detach().float()
            new_in = _distil_inputs(model, prefixes, last, target, s, scale)
            first = torch.tensor([seq[0] for seq in seqs], device=head.device)
            new_out = head[first].detach().float().cpu() + tail[:, None] * b[None, :]
            with torch.no_grad():
                emb[ids] = new_in.to(emb.device, emb.dtype)
                head[ids] = new_out.to(head.device, head.dtype)
    finally:
        _unfreeze(model, flags)


# --------------------------------------------------------------------------------------------------------------
# registry and entry point


INIT_METHODS: dict[str, InitMethod] = {
    m.name: m
    for m in (
        InitMethod("distill", run_distill, True, "input rows distilled from the sub-token sequence, output rows "
                   "give the base's probability of the whole sequence (best measured at step 0)"),
        InitMethod("mean-subtoken", _init_mean_subtoken, True, "mean of the base rows of the sub-tokens"),
        InitMethod("mean", _init_mean, False, "every new row = the mean base row"),
        InitMethod("random", _init_random, False, "normal(0, initializer_range), seeded (transformers' default)"),
    )
}  # fmt: skip
INITS: tuple[str, ...] = tuple(INIT_METHODS)
DEFAULT_INIT = "distill"


def initialise_new_rows(
    model: Any, n_base: int, rows: int, subtokens: Sequence[Sequence[int]], init: str = DEFAULT_INIT
) -> bool:
    """Resize input embeddings and output head of `model` to `rows` and initialise every row from `n_base` on.

    Rows [n_base, n_base + len(subtokens)) are the new pieces, the rest pad rows (the mean base row, except for
    `random`). Rows below n_base are copied bit for bit and the dtype is kept. Returns whether the input and
    output matrices are tied.
    """
    import torch

    method = INIT_METHODS.get(init)
    if method is None:
        raise InitError(f"--init {init!r} is unknown; choose one of {', '.join(INITS)}.")
    if n_base + len(subtokens) > rows:
        raise InitError(f"{rows} embedding rows cannot hold {n_base} base + {len(subtokens)} new pieces.")
    if method.needs_subtokens and any(not s for s in subtokens):
        raise InitError(f"--init {init} needs the base sub-token ids of every new piece; some are empty.")
    model.resize_token_embeddings(rows, mean_resizing=False)
    emb = model.get_input_embeddings().weight
    out_layer = model.get_output_embeddings()
    head = None if out_layer is None else out_layer.weight
    tied = head is None or head is emb or head.data_ptr() == emb.data_ptr()
    if not tied and head.shape[0] != rows:
        raise InitError(f"the output head has {head.shape[0]} rows after resizing, expected {rows}.")
    method.run(Rows(model, n_base, subtokens, tied, torch.Generator().manual_seed(RANDOM_SEED)))
    _check_finite(model, n_base, tied)
    return tied


def _check_finite(model: Any, n_base: int, tied: bool) -> None:
    import torch

    mats = [model.get_input_embeddings().weight] + ([] if tied else [model.get_output_embeddings().weight])
    for w in mats:
        if not bool(torch.isfinite(w[n_base:]).all()):
            raise InitError("the initialised rows hold NaN or inf; use --init mean-subtoken and report this.")
