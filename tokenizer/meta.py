"""`zhtw_tokenizer.json`, the hand-off record of `zhtw-tok build`, as a typed class later stages read through.

Why its own module: the build writes this file and `verify` reads it back; both import the name, the format
and the reader from here, so neither needs the other (and readers need no sentencepiece).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from zhtw.common.fsutil import show_path
from zhtw.common.meta import ArtifactMeta, typed
from zhtw.tokenizer.errors import MetadataError

__all__ = ["TOKENIZER_FORMAT", "TOKENIZER_METADATA", "TokenizerMeta", "read_metadata"]

TOKENIZER_FORMAT = "zhtw-tokenizer/1"
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


def read_metadata(directory: str | Path) -> dict[str, Any] | None:
    """The build's metadata, None when absent; an empty, damaged or foreign file raises `MetadataError`."""
    path = Path(directory) / TOKENIZER_METADATA
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MetadataError(
            f"{show_path(path)} is unreadable ({e}); rebuild with zhtw-tok build --overwrite."
        ) from e
    if not isinstance(meta, dict) or meta.get("format") != TOKENIZER_FORMAT:
        raise MetadataError(
            f"{show_path(path)} is not a {TOKENIZER_FORMAT} metadata file; rebuild with zhtw-tok build --overwrite."
        )
    return meta
