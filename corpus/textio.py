"""Text I/O shared by the later stages: stream document texts from any corpus-stage input or output.

Tokenizer training and pretraining data preparation read text through `iter_texts`, so they accept
what the corpus stage accepts (JSONL(.gz/.zst), Parquet, WET/WARC, .txt; files, directories, globs)
and a finished corpus output directory as it is: its ``*.jsonl.gz`` / ``*.jsonl.zst`` / ``*.parquet``
shards (every ``output.compression``) are read and everything else there (``stats.json``, logs, names
starting with '.' or '_') is ignored.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from zhtw.corpus.readers import ReadIssue, iter_file, scan_inputs

__all__ = ["TextStats", "iter_texts"]

log = logging.getLogger(__name__)


@dataclass
class TextStats:
    """What `iter_texts` read: files, texts yielded, empty texts skipped and issues by reason."""

    files: int = 0
    documents: int = 0
    characters: int = 0
    empty: int = 0
    issues: Counter[str] = field(default_factory=Counter)

    @property
    def unreadable(self) -> int:
        """Units (or files) that could not be read, all reasons together."""
        return sum(self.issues.values())


def iter_texts(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    text_key: str = "text",
    *,
    fallback_text_keys: Iterable[str] = ("raw_content",),
    stats: TextStats | None = None,
) -> Iterator[str]:
    """Yield the non-empty document texts of `paths` in sorted file order.

    Each unreadable unit is logged once as a warning and counted in `stats` (pass a `TextStats`
    to read the counts afterwards), and so is each input entry skipped unopened (a FIFO, a broken
    link, a directory loop). Missing or unsupported paths raise `InputError` at the call, before
    anything is read.
    """
    scan = scan_inputs(paths)
    fallbacks = tuple(fallback_text_keys)
    stats = stats if stats is not None else TextStats()
    return _texts(scan.files, scan.skipped, text_key, fallbacks, stats)


def _texts(
    files: list[str], skipped: list[ReadIssue], text_key: str, fallbacks: tuple[str, ...], stats: TextStats
) -> Iterator[str]:
    for issue in skipped:  # FIFOs, broken links, directory loops: counted, never opened
        _count_issue(issue, stats)
    for path in files:
        stats.files += 1
        for item in iter_file(path, text_key=text_key, fallback_text_keys=fallbacks):
            if isinstance(item, ReadIssue):
                _count_issue(item, stats)
            elif item.text.strip():
                stats.documents += 1
                stats.characters += len(item.text)
                yield item.text
            else:
                stats.empty += 1


def _count_issue(issue: ReadIssue, stats: TextStats) -> None:
    stats.issues[issue.reason] += 1
    log.warning("skipped unreadable input: %s", issue)
