"""Merge a trained candidate vocabulary into the base at the protobuf level.

Rules (issue 3, step 3): only pieces the base lacks; by default only pieces holding a Chinese character
(`charclass.is_zh_char`); scores below every base piece in learned order; no duplicates; every added
multi-character piece buildable from two pieces of the vocabulary; exactly the requested total. Pieces are
chosen by the tokens they save on held-back text when the merged tokenizer encodes it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sentencepiece as spm

from zhtw.tokenizer.charclass import has_zh
from zhtw.tokenizer.errors import CorpusTooSmallError
from zhtw.tokenizer.spmodel import NORMAL, ModelProto

Log = Callable[[str], None]


def learned_pieces(trained: ModelProto) -> list[str]:
    """NORMAL pieces of a trained model in learned (score) order."""
    normal = [(i, p) for i, p in enumerate(trained.pieces) if p.type == NORMAL]
    normal.sort(key=lambda ip: (-ip[1].score, ip[0]))
    return [p.piece for _, p in normal]


def _printable(piece: str) -> bool:
    return all(ch.isprintable() or ch == "\u3000" for ch in piece)


def candidate_pieces(trained: ModelProto, base: ModelProto, *, zh_only: bool = True) -> list[str]:
    """Trained pieces the base lacks, in learned order; by default only those holding a Chinese character."""
    base_pieces = {p.piece for p in base.pieces}
    out = []
    for piece in learned_pieces(trained):
        if piece in base_pieces or not _printable(piece):
            continue
        if zh_only and not has_zh(piece):
            continue
        out.append(piece)
    return out


def splits(piece: str, vocab: set[str] | dict[str, Any]) -> list[tuple[str, str]]:
    """Ways to build `piece` by one BPE merge of two pieces in `vocab`."""
    return [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]


def reachable(candidates: Sequence[str], base: ModelProto) -> tuple[list[str], list[str]]:
    """Split candidates into (buildable, not buildable) by BPE merges from base + buildable candidates.

    A single character is an initial symbol; a longer piece needs a split into two buildable pieces.
    Processing by length is a complete fixpoint because both halves of a split are shorter.
    """
    ok: set[str] = {p.piece for p in base.pieces if p.type == NORMAL}
    good: set[str] = set()
    for piece in sorted(set(candidates), key=len):
        if len(piece) == 1 or splits(piece, ok):
            ok.add(piece)
            good.add(piece)
    return [p for p in candidates if p in good], [p for p in candidates if p not in good]


def scores_below(floor: float, n: int) -> list[float]:
    """`n` strictly decreasing float32 scores, all below `floor` (sentencepiece stores scores as float32)."""
    out: list[float] = []
    s = np.float32(floor)
    for _ in range(n):
        nxt = np.float32(s - np.float32(1.0))
        if nxt >= s:
            nxt = np.nextafter(s, np.float32(-np.inf), dtype=np.float32)
        out.append(float(nxt))
        s = nxt
    return out


def merged_proto(base: ModelProto, pieces: Sequence[str], scores: Sequence[float] | None = None) -> ModelProto:
    """Base proto with `pieces` appended as NORMAL pieces (default scores: below the base, in given order)."""
    if scores is None:
        floor = min(p.score for p in base.pieces if p.type == NORMAL)
        scores = scores_below(floor, len(pieces))
    out = ModelProto()
    out.CopyFrom(base)
    for piece, score in zip(pieces, scores, strict=True):
        new = out.pieces.add()
        new.piece = piece
        new.score = score
        new.type = NORMAL
    out.trainer_spec.vocab_size = len(out.pieces)
    return out


def naive_merge(base: ModelProto, trained: ModelProto, total: int) -> ModelProto:
    """Chinese-LLaMA-style merge: every new trained piece of any script, all with score 0, in trained order.

    To fit `total`, the latest merges are dropped but every new character is kept: exactly what training the
    same corpus to a smaller vocabulary would give (BPE merges are learned greedily, characters come from
    the coverage setting), i.e. Chinese-LLaMA's recipe at this total size.
    """
    base_pieces = {p.piece for p in base.pieces}
    budget = max(0, total - len(base.pieces))
    new = [p for p in learned_pieces(trained) if p not in base_pieces]
    chars = [p for p in new if len(p) == 1][:budget]
    keep = set(chars) | set([p for p in new if len(p) > 1][: budget - len(chars)])
    pieces = [p for p in new if p in keep]
    return merged_proto(base, pieces, [0.0] * len(pieces))


def encode_counts(proto: ModelProto, texts: Sequence[str], num_threads: int) -> tuple[np.ndarray, int]:
    """Token usage counts per id and the total token count when `proto` encodes `texts`."""
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    counts = np.zeros(len(proto.pieces), dtype=np.int64)
    total = 0
    step = 256
    for i in range(0, len(texts), step):
        for ids in sp.encode(list(texts[i : i + step]), num_threads=num_threads):
            counts += np.bincount(ids, minlength=len(counts))[: len(counts)] if ids else 0
            total += len(ids)
    return counts, total


@dataclass
class Selection:
    """The chosen pieces in learned order and how they were chosen."""

    pieces: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


class _Dependencies:
    """Which kept pieces still have a buildable split; a piece that is the last support of another stays."""

    def __init__(self, pieces: Sequence[str], base_normal: set[str]) -> None:
        universe = set(base_normal) | set(pieces)
        self.present = set(pieces)
        self.split_valid: dict[str, list[bool]] = {}
        self.valid_count: dict[str, int] = {}
        self.users: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for p in pieces:
            if len(p) == 1:
                continue
            sp = splits(p, universe)
            self.split_valid[p] = [True] * len(sp)
            self.valid_count[p] = len(sp)
            for j, (a, b) in enumerate(sp):
                for half in {a, b}:
                    if half in self.present:
                        self.users[half].append((p, j))

    def required(self, piece: str) -> bool:
        return any(
            q in self.present and self.split_valid[q][j] and self.valid_count[q] == 1 for q, j in self.users[piece]
        )

    def remove(self, piece: str) -> None:
        self.present.discard(piece)
        for q, j in self.users[piece]:
            if self.split_valid[q][j]:
                self.split_valid[q][j] = False
                self.valid_count[q] -= 1


def select_by_savings(
    base: ModelProto,
    candidates: Sequence[str],
    n_new: int,
    heldout: Sequence[str],
    *,
    rounds: int = 3,
    num_threads: int = 1,
    log: Log = print,
) -> Selection:
    """Keep the `n_new` candidates that save the most tokens on `heldout`, pruning in rounds.

    Each round encodes the held-back text with the current merged model, estimates what removing each piece
    would cost (uses x (tokens without it - 1): a new character falls back to its UTF-8 bytes, a longer piece
    to at least two tokens), and removes the cheapest pieces that no kept piece needs as its last buildable
    split. Later-learned pieces go first on ties.
    """
    candidates = list(candidates)
    if len(candidates) < n_new:
        raise CorpusTooSmallError(
            f"only {len(candidates):,} new buildable pieces were learned but {n_new:,} are needed; give more text "
            "(--corpus, --sample-mb), raise --candidate-factor, or lower --vocab-size."
        )
    stats: dict[str, Any] = {"candidates": len(candidates), "rounds": []}
    if not heldout or len(candidates) == n_new:
        stats["method"] = "learned order" if not heldout else "all candidates"
        kept = candidates[:n_new] if len(candidates) == n_new else _first_buildable(base, candidates, n_new)
        return Selection(kept, stats)
    stats["method"] = "token savings on held-back text"
    rank = {p: i for i, p in enumerate(candidates)}
    base_normal = {p.piece for p in base.pieces if p.type == NORMAL}
    deps = _Dependencies(candidates, base_normal)
    kept = list(candidates)
    n_base = len(base.pieces)
    rounds = max(1, rounds)
    for r in range(rounds):
        excess = len(kept) - n_new
        if excess <= 0:
            break
        t0 = time.perf_counter()
        counts, total = encode_counts(merged_proto(base, kept), heldout, num_threads)
        to_remove = math.ceil(excess / (rounds - r))
        cost = {}
        for i, p in enumerate(kept):
            extra = len(p.encode("utf-8")) - 1 if len(p) == 1 else 1
            cost[p] = int(counts[n_base + i]) * extra
        order = sorted(kept, key=lambda p: (cost[p], -rank[p]))
        removed: set[str] = set()
        while len(removed) < to_remove:
            progress = False
            for p in order:
                if len(removed) >= to_remove:
                    break
                if p in removed or deps.required(p):
                    continue
                deps.remove(p)
                removed.add(p)
                progress = True
            if not progress:
                break
        kept = [p for p in kept if p not in removed]
        unused = int(sum(1 for i in range(len(kept) + len(removed)) if counts[n_base + i] == 0))
        stats["rounds"].append(
            {
                "pieces_before": len(kept) + len(removed),
                "heldout_tokens": total,
                "unused_before": unused,
                "removed": len(removed),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
        log(
            f"selection round {r + 1}/{rounds}: {len(kept) + len(removed):,} pieces encode the held-back text "
            f"in {total:,} tokens; removed {len(removed):,} ({time.perf_counter() - t0:.1f} s)"
        )
    if len(kept) != n_new:
        raise CorpusTooSmallError(
            f"could not prune to {n_new:,} buildable pieces (have {len(kept):,}); raise --prune-rounds or "
            "lower --vocab-size."
        )
    _, total = encode_counts(merged_proto(base, kept), heldout, num_threads)
    stats["heldout_tokens_final"] = total
    return Selection(kept, stats)


def _first_buildable(base: ModelProto, candidates: Sequence[str], n_new: int) -> list[str]:
    """Every new character (the coverage setting chose them), then merges in learned order with what they need.

    BPE lists its characters after all merges; cutting the learned order at N would drop rare characters to
    3-byte fallback, which costs more than the last merges save (measured on zh-TW Wikipedia).
    """
    vocab = {p.piece for p in base.pieces if p.type == NORMAL}
    universe = vocab | set(candidates)
    chosen: set[str] = {p for p in candidates if len(p) == 1}
    if len(chosen) > n_new:
        chosen = set([p for p in candidates if len(p) == 1][:n_new])

    def need(piece: str, acc: list[str]) -> None:
        """Append to `acc` (dependencies first) what `piece` needs beyond the vocabulary so far."""
        if piece in vocab or piece in chosen or piece in acc:
            return
        if len(piece) > 1:
            a, b = min(splits(piece, universe), key=lambda ab: sum(x not in vocab and x not in chosen for x in ab))
            need(a, acc)
            need(b, acc)
        acc.append(piece)

    for p in candidates:
        if len(chosen) >= n_new:
            break
        add: list[str] = []
        need(p, add)
        if len(chosen) + len(add) <= n_new:
            chosen.update(add)
    return [p for p in candidates if p in chosen]
