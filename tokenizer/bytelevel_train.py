"""Continued BPE training on a byte-level base: new merges learned on top of the base's own segmentation.

Why not `tokenizers.trainers.BpeTrainer`: it starts from bytes, not from the base's merges, so its merges would
re-learn (and reorder) what the base already has. Here every unique pre-token (the base's normaliser and
pre-tokenizer) is first segmented by the base itself (`model.tokenize`, honouring `ignore_merges`), then the most
frequent adjacent pair is merged, repeatedly, among pairs whose merged token obeys the allowed-character rule of
`zhtw.tokenizer.bytelevel.safe_new_token`. Pair counts are updated incrementally (pair -> words index and a lazy
max-heap), so 32k merges on ~12 MB of text take minutes on one core.

Tie-break: equal counts are broken by the smaller (left id, right id). A pair whose merged token already exists
(in the base vocabulary, among the base's added tokens, or as an earlier new token made by another split) is
never added: it would give an existing token a second rule or id, and the base's own segmentation must stay the
starting point. Sources are unbalanced (the gazette is 42 of 74 MB of the train pool): `balanced_texts` gives each
source file an equal character share.
"""

from __future__ import annotations

import heapq
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence

from zhtw.corpus.textio import iter_texts
from zhtw.tokenizer.bytelevel import ALLOWED_RANGES, ByteLevelBase, safe_new_token, token_bytes
from zhtw.tokenizer.errors import CorpusTooSmallError

__all__ = ["balanced_texts", "count_pretokens", "learn_merges"]

Progress = Callable[[int, int], None]
_ALLOWED_RE = re.compile("[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ALLOWED_RANGES) + "]")


def _water_fill(sizes: Sequence[int], total: int, weights: Sequence[float]) -> list[int]:
    """Shares of `total` in proportion to `weights`; a source smaller than its share gives the rest to the others."""
    caps = [0] * len(sizes)
    left, weight_left = total, float(sum(weights))
    for i in sorted(range(len(sizes)), key=lambda i: sizes[i] / weights[i] if weights[i] else float("inf")):
        share = int(left * weights[i] / weight_left) if weight_left > 0 else 0
        caps[i] = min(sizes[i], share)
        left -= caps[i]
        weight_left -= weights[i]
    return caps


def _spread(docs: Sequence[str], cap: int) -> list[str]:
    """About `cap` characters of documents taken evenly through the file (not just its first documents)."""
    size = sum(map(len, docs))
    if size <= cap:
        return list(docs)
    fraction, seen, taken, out = cap / size, 0, 0, []
    for d in docs:
        seen += len(d)
        if taken < fraction * seen:
            out.append(d)
            taken += len(d)
    return out


def balanced_texts(
    files: Sequence[str | os.PathLike[str]],
    total_chars: int,
    *,
    weights: Sequence[float] | None = None,
    text_key: str = "text",
) -> list[str]:
    """Documents from each file, each file getting an equal (or `weights`-proportional) share of `total_chars`.

    A file with less text than its share is taken whole and the rest is shared among the others; documents are
    taken evenly through each file, not just its first ones.
    """
    weights = list(weights) if weights is not None else [1.0] * len(files)
    if len(weights) != len(files) or any(w < 0 for w in weights):
        raise ValueError("give one non-negative weight per file")
    per_file = [list(iter_texts(f, text_key)) for f in files]
    caps = _water_fill([sum(map(len, docs)) for docs in per_file], total_chars, weights)
    return [d for docs, cap in zip(per_file, caps) for d in _spread(docs, cap)]


def count_pretokens(
    base: ByteLevelBase, texts: Iterable[str], *, per_doc_cap: int | None = None
) -> Counter[str]:
    """Byte-level pre-tokens (the base's normaliser + pre-tokenizer) that hold an allowed character, counted.

    `per_doc_cap` counts a pre-token at most that many times per document, so boilerplate repeated inside
    one long document (gazette headers, legal formulas) weighs less than phrases used across documents.
    """
    tok = base.tokenizer
    counts: Counter[str] = Counter()
    for text in texts:
        norm = tok.normalizer.normalize_str(text) if tok.normalizer is not None else text
        pieces = (p for p, _ in tok.pre_tokenizer.pre_tokenize_str(norm))
        if per_doc_cap is None:
            counts.update(pieces)
        else:
            counts.update({p: min(c, per_doc_cap) for p, c in Counter(pieces).items()})
    return Counter(
        {p: c for p, c in counts.items() if _ALLOWED_RE.search(token_bytes(p).decode("utf-8", "replace"))}
    )


_SHIFT = 21  # pair key = left id << _SHIFT | right id (ids stay below 2**21)
_MASK = (1 << _SHIFT) - 1


class _PairTrainer:
    """Incremental BPE merge counting over unique words (symbol-id lists with frequencies).

    Only pairs whose merged token is allowed are counted. A merge updates just the pairs next to each
    occurrence, so its cost follows the number of occurrences, not the length of the words.
    """

    def __init__(
        self, base: ByteLevelBase, words: list[list[int]], freqs: list[int], max_chars: int | None = None
    ) -> None:
        self.max_chars = max_chars
        self.strings = {i: t for t, i in base.vocab.items()}
        self.existing = set(base.vocab) | {t["content"] for t in base.added_tokens}
        self.next_id = base.next_id
        self.words, self.freqs = words, freqs
        self.safe_memo: dict[int, bool] = {}
        self.raw: dict[int, bytes] = {}
        self.counts: defaultdict[int, int] = defaultdict(int)
        self.where: defaultdict[int, set[int]] = defaultdict(set)
        for wi, w in enumerate(words):
            f = self.freqs[wi]
            for x, y in zip(w, w[1:]):
                self._inc(x << _SHIFT | y, f, wi)
        self.heap = [(-c, k) for k, c in self.counts.items()]
        heapq.heapify(self.heap)
        self.changed: set[int] = set()

    def _safe(self, key: int) -> bool:
        ok = self.safe_memo.get(key)
        if ok is None:
            a, b = key >> _SHIFT, key & _MASK
            raw = self._raw(a) + self._raw(b)
            ok = safe_new_token(raw) and (self.max_chars is None or _n_chars(raw) <= self.max_chars)
            ok = ok and self.strings[a] + self.strings[b] not in self.existing
            self.safe_memo[key] = ok
        return ok

    def _raw(self, symbol: int) -> bytes:
        raw = self.raw.get(symbol)
        if raw is None:
            raw = self.raw[symbol] = token_bytes(self.strings[symbol])
        return raw

    def _inc(self, key: int, f: int, wi: int) -> None:
        if self._safe(key):
            self.counts[key] += f
            self.where[key].add(wi)

    def _dec(self, key: int, f: int) -> None:
        if self._safe(key):
            self.counts[key] -= f
            self.changed.add(key)

    def best(self, min_count: int) -> tuple[int, int] | None:
        """The most frequent live pair (count >= min_count), or None when none is left."""
        while self.heap:
            neg, key = self.heap[0]
            if -neg < min_count:
                return None
            heapq.heappop(self.heap)
            if self.counts.get(key, 0) != -neg or not self._safe(key):
                continue
            a, b = key >> _SHIFT, key & _MASK
            if self.strings[a] + self.strings[b] in self.existing:
                self.safe_memo[key] = False  # another split made this token first
                continue
            return a, b
        return None

    def merge(self, pair: tuple[int, int]) -> None:
        """Apply `pair` everywhere as a new token and update the counts next to each occurrence."""
        a, b = pair
        new = self.next_id
        self.next_id += 1
        self.strings[new] = self.strings[a] + self.strings[b]
        self.existing.add(self.strings[new])
        key = a << _SHIFT | b
        for wi in self.where.pop(key, ()):
            self._merge_word(wi, a, b, new)
        self.counts.pop(key, None)
        self.changed.discard(key)
        for k in self.changed:
            c = self.counts.get(k, 0)
            if c > 0:
                heapq.heappush(self.heap, (-c, k))
            else:
                self.counts.pop(k, None)
        self.changed = set()

    def _merge_word(self, wi: int, a: int, b: int, new: int) -> None:
        w, f = self.words[wi], self.freqs[wi]
        n = len(w)
        hits = [i for i in _occurrences(w, a, b)]
        if not hits:
            return
        starts = set(hits)
        for i in hits:
            if i > 0:
                self._dec(w[i - 1] << _SHIFT | w[i], f)
            if i + 2 < n and i + 2 not in starts:
                self._dec(w[i + 1] << _SHIFT | w[i + 2], f)
        out: list[int] = []
        i = 0
        while i < n:
            if i in starts:
                out.append(new)
                i += 2
            else:
                out.append(w[i])
                i += 1
        self.words[wi] = out
        for k, s in enumerate(out):
            if s != new:
                continue
            if k > 0:
                self._inc_changed(out[k - 1] << _SHIFT | new, f, wi)
            if k + 1 < len(out) and out[k + 1] != new:
                self._inc_changed(new << _SHIFT | out[k + 1], f, wi)

    def _inc_changed(self, key: int, f: int, wi: int) -> None:
        if self._safe(key):
            self.counts[key] += f
            self.where[key].add(wi)
            self.changed.add(key)


def _n_chars(raw: bytes) -> int:
    """Characters begun in a UTF-8 byte string (its lead bytes)."""
    return sum(1 for b in raw if not 0x80 <= b <= 0xBF)


def _occurrences(w: list[int], a: int, b: int) -> list[int]:
    """Start positions of (a, b) in `w`, left to right, without overlap."""
    hits, i, n = [], 0, len(w) - 1
    while i < n:
        if w[i] == a and w[i + 1] == b:
            hits.append(i)
            i += 2
        else:
            i += 1
    return hits


def _initial_words(base: ByteLevelBase, counts: Counter[str]) -> tuple[list[list[int]], list[int]]:
    """Each unique pre-token as the base segments it (ignore_merges honoured), with its frequency."""
    model = base.tokenizer.model
    words, freqs = [], []
    for piece, c in counts.items():
        ids = [t.id for t in model.tokenize(piece)]
        if len(ids) > 1:
            words.append(ids)
            freqs.append(c)
    return words, freqs


def learn_merges(
    base: ByteLevelBase,
    texts: Iterable[str],
    n_new: int,
    *,
    progress: Progress | None = None,
    min_count: int = 2,
    allow_fewer: bool = False,
    per_doc_cap: int | None = None,
    max_token_chars: int | None = None,
) -> list[tuple[str, str]]:
    """Up to `n_new` new merges (left, right) as byte-level strings, in learned order.

    Raises `CorpusTooSmallError` when the texts hold too few Chinese characters for `n_new` merges (checked
    before training) or when training runs out of pairs seen at least `min_count` times (unless `allow_fewer`).
    """
    counts = count_pretokens(base, texts, per_doc_cap=per_doc_cap)
    chars = sum(len(token_bytes(p).decode("utf-8", "replace")) * c for p, c in counts.items())
    if chars < 2 * n_new:
        raise CorpusTooSmallError(
            f"the corpus holds only {chars:,} characters in Chinese pre-tokens, too few for {n_new:,} new merges; "
            "give more text or ask for fewer new tokens."
        )
    trainer = _PairTrainer(base, *_initial_words(base, counts), max_chars=max_token_chars)
    merges: list[tuple[str, str]] = []
    while len(merges) < n_new:
        pair = trainer.best(min_count)
        if pair is None:
            break
        merges.append((trainer.strings[pair[0]], trainer.strings[pair[1]]))
        trainer.merge(pair)
        if progress is not None and (len(merges) % 256 == 0 or len(merges) == n_new):
            progress(len(merges), n_new)
    if len(merges) < n_new and not allow_fewer:
        raise CorpusTooSmallError(
            f"the corpus supports only {len(merges):,} new merges seen at least {min_count} times "
            f"(asked for {n_new:,}); give more text or ask for at most {len(merges):,} new tokens."
        )
    return merges
