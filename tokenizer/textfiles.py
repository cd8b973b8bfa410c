"""Evaluation and verification text: corpus files through `iter_texts`, any other file as one document."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from zhtw.corpus.readers import SUPPORTED_EXTENSIONS
from zhtw.corpus.textio import iter_texts


def is_corpus_file(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(tuple(SUPPORTED_EXTENSIONS))


def iter_path_texts(path: str | os.PathLike[str], text_key: str = "text") -> Iterator[str]:
    """Documents of a corpus file/directory/glob, or the whole content of any other text file (e.g. .py, .md)."""
    p = Path(path)
    if p.is_file() and not is_corpus_file(p):
        yield p.read_text(encoding="utf-8", errors="strict")
    else:
        yield from iter_texts([str(path)], text_key)


def read_texts(path: str | os.PathLike[str], text_key: str = "text") -> list[str]:
    return list(iter_path_texts(path, text_key))
