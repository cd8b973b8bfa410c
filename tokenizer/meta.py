"""`zhtw_tokenizer.json`, the hand-off record of `zhtw-tok build`, as a typed class later stages read through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from zhtw.common.meta import ArtifactMeta, typed

__all__ = ["TOKENIZER_FORMAT", "TOKENIZER_METADATA", "TokenizerMeta"]

TOKENIZER_FORMAT = "zhtw-tokenizer/1"  # = zhtw.tokenizer.build.FORMAT (kept here so readers need no sentencepiece)
TOKENIZER_METADATA = "zhtw_tokenizer.json"


@dataclass
class TokenizerMeta(ArtifactMeta):
    """What prepare, export and the model card rely on: sizes, the backend, the base and the file digests."""

    FILENAME: ClassVar[str] = TOKENIZER_METADATA
    FORMAT: ClassVar[str | None] = TOKENIZER_FORMAT
    MADE_BY: ClassVar[str] = "zhtw-tok build"

    vocab_size: int = typed(int)
    base_vocab_size: int = typed(int)
    files: dict[str, str] = typed(dict)
    backend: str = typed(str, default="sentencepiece")
    base: dict[str, Any] = typed(dict, default_factory=dict)
