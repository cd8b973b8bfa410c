"""The invariants of an extended byte-level BPE tokenizer, each checked on the written files.

Checks run in this order and the first broken one raises `VerificationError(invariant, message, example)`:
"duplicates" (no token string or id twice, no new token equal to an added token), "base-ids" (every base token
keeps its id), "specials" (added/special tokens identical), "contiguous" (new ids run from the first id after every
base id, without gaps), "reachable" (every new token is made by a merge of base-or-earlier tokens and BPE of its
bytes alone ends in it), "round-trip" (decode(encode(t)) == the normalised t), "english" (English/code texts give
the base's ids), "reference" (Hugging Face ids == the tiktoken reference ids), "base-config" (normaliser,
pre-tokenizer, decoder, post-processor, model flags and the base's merges as a prefix, all unchanged), "allowed"
(every new token obeys the allowed-character rule). Behaviour is checked before configuration so that each
invariant can be broken on its own in the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhtw.tokenizer.bytelevel import (
    ByteLevelBase,
    normalize,
    reference_encoder,
    safe_new_token,
    token_bytes,
)
from zhtw.tokenizer.errors import VerificationError

__all__ = ["INVARIANTS", "VerifyReport", "verify"]

INVARIANTS = (
    "duplicates",
    "base-ids",
    "specials",
    "contiguous",
    "reachable",
    "round-trip",
    "english",
    "reference",
    "base-config",
    "allowed",
)


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` checked: every invariant in `INVARIANTS` held."""

    new_tokens: int
    first_new_id: int
    texts: int
    english_texts: int
    checks: tuple[str, ...] = INVARIANTS


def _shown(token: str) -> str:
    return token_bytes(token).decode("utf-8", "backslashreplace")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise VerificationError("duplicates", f"tokenizer.json holds the key {k!r} twice", k)
        seen[k] = v
    return seen


def _load(out_dir: Path) -> dict[str, Any]:
    text = (out_dir / "tokenizer.json").read_text(encoding="utf-8")
    return json.loads(text, object_pairs_hook=_no_duplicate_keys)


def check_duplicates(data: dict[str, Any]) -> None:
    vocab = data["model"]["vocab"]
    by_id: dict[int, str] = {}
    for token, i in vocab.items():
        if by_id.setdefault(i, token) != token:
            raise VerificationError("duplicates", f"id {i} is given to {by_id[i]!r} and {token!r}", token)
    for t in data.get("added_tokens") or []:
        if t["content"] in vocab and vocab[t["content"]] != t["id"]:
            raise VerificationError(
                "duplicates",
                f"added token {t['content']!r} is also vocabulary id {vocab[t['content']]}",
                t["content"],
            )


def check_base_ids(base: ByteLevelBase, data: dict[str, Any]) -> None:
    vocab = data["model"]["vocab"]
    for token, i in base.vocab.items():
        if vocab.get(token) != i:
            raise VerificationError("base-ids", f"base token id {i} is now {vocab.get(token)}", _shown(token))


def check_specials(base: ByteLevelBase, data: dict[str, Any], fast: Any) -> None:
    """The added tokens as written AND as the loaded tokenizer assigns them (tokenizers may renumber them)."""
    now = data.get("added_tokens") or []
    if list(base.added_tokens) != list(now):
        diff = next((a, b) for a, b in zip([*base.added_tokens, None], [*now, None]) if a != b)
        raise VerificationError("specials", "the added/special tokens differ from the base's", str(diff))
    for t in base.added_tokens:
        got = fast.convert_tokens_to_ids(t["content"])
        if got != t["id"]:
            raise VerificationError(
                "specials", f"the loaded tokenizer gives id {got}, not {t['id']}", t["content"]
            )


def check_contiguous(base: ByteLevelBase, data: dict[str, Any]) -> list[tuple[str, int]]:
    """The new (token, id) pairs in id order, after checking they run from the base's next id without gaps."""
    first = base.next_id
    added = {t["content"] for t in base.added_tokens}
    vocab = data["model"]["vocab"]
    new = sorted(
        ((t, i) for t, i in vocab.items() if t not in base.vocab and t not in added), key=lambda p: p[1]
    )
    for k, (token, i) in enumerate(new):
        if i != first + k:
            raise VerificationError(
                "contiguous", f"new token has id {i}, expected {first + k}", _shown(token)
            )
    return new


def _bpe(
    start: list[int], ranks: dict[tuple[int, int], int], vocab: dict[str, int], names: dict[int, str]
) -> list[int]:
    """Plain BPE over the new merges, from the base's segmentation of the same bytes."""
    ids = list(start)
    while len(ids) > 1:
        pairs = [(ranks.get((x, y)), k) for k, (x, y) in enumerate(zip(ids, ids[1:]))]
        live = [p for p in pairs if p[0] is not None]
        if not live:
            break
        _, k = min(live)
        ids[k : k + 2] = [vocab[names[ids[k]] + names[ids[k + 1]]]]
    return ids


def check_reachable(base: ByteLevelBase, data: dict[str, Any], new: list[tuple[str, int]]) -> None:
    vocab = data["model"]["vocab"]
    raw = data["model"]["merges"][len(base.merges) :]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in raw]
    made: set[str] = set()
    for a, b in merges:
        token = a + b
        ok = (
            a in vocab
            and b in vocab
            and token in vocab
            and vocab[a] < vocab[token]
            and vocab[b] < vocab[token]
        )
        if not ok or token in base.vocab:
            raise VerificationError(
                "reachable", f"new merge ({a!r}, {b!r}) does not build a later new token", f"{a} {b}"
            )
        made.add(token)
    names = {i: t for t, i in vocab.items()}
    ranks = {(vocab[a], vocab[b]): r for r, (a, b) in enumerate(merges)}
    for token, i in new:
        if token not in made:
            raise VerificationError(
                "reachable", f"new token id {i} has no merge that makes it", _shown(token)
            )
        start = [t.id for t in base.tokenizer.model.tokenize(token)]
        if _bpe(start, ranks, vocab, names) != [i]:
            raise VerificationError(
                "reachable", f"BPE of new token id {i}'s bytes does not end in it", _shown(token)
            )


def _encode(fast: Any, texts: Sequence[str]) -> list[list[int]]:
    return fast(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def check_round_trip(data: dict[str, Any], fast: Any, texts: Sequence[str], ids: list[list[int]]) -> None:
    for text, row in zip(texts, ids):
        back = fast.decode(row, clean_up_tokenization_spaces=False)
        if back != normalize(data, text):
            raise VerificationError("round-trip", "decode(encode(text)) differs from the text", text)


def check_english(base: ByteLevelBase, english: Sequence[str], ids: list[list[int]]) -> None:
    expected = [e.ids for e in base.tokenizer.encode_batch(list(english), add_special_tokens=False)]
    for text, got, want in zip(english, ids, expected):
        if got != want:
            raise VerificationError(
                "english", "an English/code text tokenises differently from the base", text
            )


def check_reference(data: dict[str, Any], texts: Sequence[str], ids: list[list[int]]) -> None:
    ref = reference_encoder(data)
    for text, got in zip(texts, ids):
        if ref.encode(text) != got:
            raise VerificationError("reference", "Hugging Face ids differ from the tiktoken reference", text)


_CONFIG_KEYS = ("normalizer", "pre_tokenizer", "decoder", "post_processor", "truncation", "padding")


def check_base_config(base: ByteLevelBase, data: dict[str, Any]) -> None:
    for key in _CONFIG_KEYS:
        if data.get(key) != base.data.get(key):
            raise VerificationError(
                "base-config", f"{key} differs from the base's", json.dumps(data.get(key))
            )
    model, base_model = data["model"], base.data["model"]
    for key in set(model) | set(base_model):
        if key not in ("vocab", "merges") and model.get(key) != base_model.get(key):
            raise VerificationError(
                "base-config", f"model.{key} differs from the base's", str(model.get(key))
            )
    if model["merges"][: len(base_model["merges"])] != base_model["merges"]:
        raise VerificationError(
            "base-config", "the base's merges are not kept, in order, before the new ones"
        )


def check_allowed(new: list[tuple[str, int]]) -> None:
    for token, i in new:
        if not safe_new_token(token_bytes(token)):
            raise VerificationError(
                "allowed", f"new token id {i} breaks the allowed-character rule", _shown(token)
            )


def verify(
    out_dir: str | os.PathLike[str], base: ByteLevelBase, texts: Sequence[str], english_texts: Sequence[str]
) -> VerifyReport:
    """Check every invariant of the extended tokenizer in `out_dir` against its `base`; raise on the first."""
    from transformers import AutoTokenizer

    out = Path(out_dir)
    data = _load(out)
    check_duplicates(data)
    check_base_ids(base, data)
    fast = AutoTokenizer.from_pretrained(out)
    check_specials(base, data, fast)
    new = check_contiguous(base, data)
    check_reachable(base, data, new)
    everything = list(texts) + list(english_texts)
    ids = _encode(fast, everything)
    check_round_trip(data, fast, everything, ids)
    check_english(base, english_texts, ids[len(texts) :])
    check_reference(data, everything, ids)
    check_base_config(base, data)
    check_allowed(new)
    return VerifyReport(len(new), base.next_id, len(texts), len(english_texts))
