"""Tokenizer backends: one interface for every tokenizer format the toolkit extends.

A backend knows one format (SentencePiece BPE `tokenizer.model`, byte-level BPE `tokenizer.json`, ...) and
answers every question the later stages ask about a tokenizer directory, so that `prepare`, the GGUF
writer, the model card and `zhtw-tok eval` never open a tokenizer file themselves:

- `claims(path)`: whether a base (file or directory) is in this backend's format;
- `encoder(directory)`: a batch encoder (texts -> ids, no special tokens) for compression measurements;
- `new_token_subtokens(tok_dir, meta)`: the base ids of every added token, for mean-subtoken init;
- `gguf_vocab(directory, rows)`: the `tokenizer.ggml.*` fields llama.cpp needs, padded to `rows`;
- `describe(meta)`: a one-line vocabulary description for the model card.

`zhtw_tokenizer.json` records the backend's `name`; `backend_for_dir` reads it back (outputs written before the
field existed are SentencePiece). Adding a format is one new module that defines a class with these methods
and registers an instance with `register()` (see README, "Adding a tokenizer format").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from zhtw.tokenizer.errors import UnsupportedBaseError

METADATA = "zhtw_tokenizer.json"

Encoder = Callable[[Sequence[str]], list[list[int]]]


@dataclass(frozen=True)
class GGUFVocab:
    """The GGUF tokenizer fields of one tokenizer, padded to the model's embedding rows."""

    model: str  # tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str  # tokenizer.ggml.pre: "default", "llama-bpe", "qwen2", ...
    tokens: list[bytes]
    types: list[int]
    scores: list[float] | None
    merges: list[str] | None
    special_ids: dict[str, int]  # bos / eos / unk / pad; absent when the tokenizer has none
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool | None = None
    remove_extra_whitespaces: bool | None = None


class TokenizerBackend(Protocol):
    """What every tokenizer format provides to the rest of the toolkit."""

    name: str

    def claims(self, path: Path) -> bool: ...

    def encoder(self, directory: Path) -> Encoder: ...

    def new_token_subtokens(self, tok_dir: Path, meta: dict[str, Any]) -> list[list[int]]: ...

    def gguf_vocab(self, directory: Path, rows: int) -> GGUFVocab: ...

    def describe(self, meta: dict[str, Any]) -> str: ...


_REGISTRY: dict[str, TokenizerBackend] = {}


def register(backend: TokenizerBackend) -> TokenizerBackend:
    """Make `backend` available under `backend.name` (last registration wins)."""
    _REGISTRY[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_backend(name: str) -> TokenizerBackend:
    _load_builtin()
    if name not in _REGISTRY:
        raise UnsupportedBaseError(
            f"tokenizer backend {name!r} is unknown; known: {', '.join(sorted(_REGISTRY))}."
        )
    return _REGISTRY[name]


def backend_for_base(path: str | Path) -> TokenizerBackend:
    """The backend whose format the base at `path` is in; refuse a directory that two formats claim."""
    _load_builtin()
    p = Path(path).expanduser()
    if not p.exists():
        raise UnsupportedBaseError(f"{path} does not exist; give the base tokenizer file or its model directory.")
    claimed = [b for b in _REGISTRY.values() if b.claims(p)]
    if not claimed:
        raise UnsupportedBaseError(
            f"{path} holds no tokenizer.model and no byte-level BPE tokenizer.json. Give a SentencePiece BPE "
            "tokenizer.model (Llama-2, Mistral) or a byte-level BPE tokenizer.json (Llama-3, Qwen2), or a "
            "directory holding one."
        )
    return claimed[0]  # the backends' claims are disjoint


def read_metadata(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / METADATA
    if not path.is_file():
        raise UnsupportedBaseError(
            f"{directory} has no {METADATA}; it is not a `zhtw-tok build` output. Build one with "
            "`zhtw-tok build --base BASE --corpus ... --output DIR`."
        )
    return json.loads(path.read_text(encoding="utf-8"))


def backend_for_dir(directory: str | Path) -> TokenizerBackend:
    """The backend that wrote the `zhtw-tok build` output `directory`; a plain tokenizer directory by its files.

    Damaged metadata does not hide the backend: it is then chosen by the files, and that backend's own checks
    report the damage by name.
    """
    path = Path(directory) / METADATA
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return get_backend(str(meta.get("backend", "sentencepiece")))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        pass
    _load_builtin()
    claimed = [b for b in _REGISTRY.values() if b.claims(Path(directory))]
    return claimed[0] if len(claimed) == 1 else get_backend("sentencepiece")


def _load_builtin() -> None:
    if _REGISTRY:
        return
    from zhtw.tokenizer.backends import bytelevel_backend, sentencepiece_backend  # noqa: F401  (register)
