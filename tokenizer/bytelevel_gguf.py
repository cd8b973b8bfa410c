"""GGUF vocabulary fields of a byte-level BPE tokenizer, as llama.cpp's convert_hf_to_gguf.py writes them.

Why not let llama.cpp's converter do it: it recognises the pre-tokenizer by hashing the ids of a check string
that contains 我想在, and Chinese merges change that hash ("BPE pre-tokenizer was not recognized"). Here the
pre-tokenizer type is read from the tokenizer.json itself (`llama-bpe` or `qwen2`; anything else is refused, never
guessed), and the rest follows `get_vocab_base` / `_set_vocab_gpt2`: tokens in id order, gaps as "[PAD{id}]"
(UNUSED), added tokens CONTROL when special or when they look special, else USER_DEFINED; merges as "a b".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from zhtw.common.fsutil import show_path
from zhtw.tokenizer.bytelevel import detect_pre, load_json

__all__ = ["GGUFVocab", "TOKEN_CONTROL", "TOKEN_NORMAL", "TOKEN_UNUSED", "TOKEN_USER_DEFINED", "gguf_vocab"]

TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


@dataclass(frozen=True)
class GGUFVocab:
    """The tokenizer.ggml.* fields llama.cpp's converter writes for a byte-level ("gpt2") vocabulary."""

    model: str
    pre: str
    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    merges: tuple[str, ...]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool


def _looks_special(token: str) -> bool:
    """llama.cpp's `does_token_look_special` (convert_hf_to_gguf.py): added tokens it makes CONTROL anyway."""
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<｜") and token.endswith("｜>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def _type_of(added: dict[str, Any] | None) -> int:
    if added is None:
        return TOKEN_NORMAL
    return TOKEN_CONTROL if added.get("special") or _looks_special(added["content"]) else TOKEN_USER_DEFINED


def gguf_vocab(
    tokenizer: str | os.PathLike[str] | dict[str, Any],
    *,
    vocab_size: int | None = None,
    config: dict[str, Any] | None = None,
) -> GGUFVocab:
    """GGUF vocabulary of a tokenizer directory (or tokenizer.json dict + tokenizer_config dict).

    Tokens run in id order up to `vocab_size` (the embedding rows; default the highest id + 1); gaps become
    "[PAD{id}]" of type UNUSED, as llama.cpp's converter writes them.
    """
    if isinstance(tokenizer, dict):
        data, where, config = tokenizer, "tokenizer.json", config or {}
    else:
        file, data = load_json(tokenizer)
        where = show_path(file)
        cfg = file.parent / "tokenizer_config.json"
        config = config or (json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {})
    pre = detect_pre(data, where)
    by_id: dict[int, tuple[str, dict[str, Any] | None]] = {
        i: (t, None) for t, i in data["model"]["vocab"].items()
    }
    for t in data.get("added_tokens") or []:
        by_id[t["id"]] = (t["content"], t)
    n = max(vocab_size or 0, max(by_id) + 1)
    tokens, types = [], []
    for i in range(n):
        token, added = by_id.get(i, (f"[PAD{i}]", {"missing": True}))
        tokens.append(token)
        types.append(TOKEN_UNUSED if added and added.get("missing") else _type_of(added))
    merges = tuple(m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"])
    ids = {t: i for i, t in enumerate(tokens)}
    return GGUFVocab(
        model="gpt2",
        pre=pre,
        tokens=tuple(tokens),
        token_types=tuple(types),
        merges=merges,
        bos_id=_special_id(config.get("bos_token"), ids),
        eos_id=_special_id(config.get("eos_token"), ids),
        pad_id=_special_id(config.get("pad_token"), ids),
        add_bos=_adds_bos(data, config, ids),
    )


def _special_id(value: Any, ids: dict[str, int]) -> int | None:
    content = value.get("content") if isinstance(value, dict) else value
    return ids.get(content) if isinstance(content, str) else None


def _adds_bos(data: dict[str, Any], config: dict[str, Any], ids: dict[str, int]) -> bool:
    if "add_bos_token" in config:
        return bool(config["add_bos_token"])
    bos = _special_id(config.get("bos_token"), ids)
    return bos is not None and f'"ids": [{bos}]' in json.dumps(data.get("post_processor"))
