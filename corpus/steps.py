"""Thin datatrove pipeline steps around the plain functions in `text`, `script` and `readers`.

Every step counts documents and characters in, kept, and dropped per reason, so that the run's
stats balance: documents read = written + dropped (by reason) + unreadable (by reason).
Stat labels (summed over tasks by datatrove): `docs_in`, `chars_in`, `kept`, `chars_kept`,
`dropped/<reason>`, `chars_dropped/<reason>`; the reader adds `read`, `unreadable/<reason>`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig, ExactDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.pipeline.readers.base import BaseReader
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.logging import logger
from datatrove.utils.word_tokenizers import WordTokenizer
from tqdm import tqdm

from zhtw.common.fsutil import atomic_write_json, show_path
from zhtw.corpus.config import CleanConfig, FilterConfig, InputConfig, ScriptConfig
from zhtw.corpus.readers import RawDoc, ReadIssue, iter_file
from zhtw.corpus.script import Converter, detect_script, load_phrase_overrides, origin_of
from zhtw.corpus.text import (
    FILTERS,
    clean_text,
    han_count,
    mainland_usage,
    remove_boilerplate_lines,
    spam_injection,
    tag_lines,
)

ISSUES_SUBDIR = "issues"
MAX_ISSUES_LOGGED_PER_TASK = 10_000
MAX_ISSUE_EXAMPLES_PER_FILE = 20


class IssueLog:
    """Unreadable units of one task: a count per file and reason for EVERY file, and the first
    few examples of each file (so a file with a million bad lines cannot hide the next one)."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}
        self.examples: dict[str, list[dict[str, str]]] = {}
        self.total = 0

    def add(self, issue: ReadIssue) -> int:
        """Record one issue; return how many this task has seen."""
        source = show_path(issue.source)
        self.counts.setdefault(source, Counter())[issue.reason] += 1
        examples = self.examples.setdefault(source, [])
        if len(examples) < MAX_ISSUE_EXAMPLES_PER_FILE:
            fields = {k: _printable(v) for k, v in dataclasses.asdict(issue).items()}
            examples.append({**fields, "source": source})
        self.total += 1
        return self.total

    def save(self, path: Path) -> None:
        """Written once when the task has read all its files (atomically: a killed task reruns)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        files = {f: dict(sorted(c.items())) for f, c in self.counts.items()}
        atomic_write_json(path, {"files": files, "examples": self.examples})


class CountingStep(PipelineStep):
    """A step that looks at one document at a time and keeps it (maybe changed) or drops it with a reason.

    With an ``exclusion_writer`` (datatrove's mechanism, as in its filters) every dropped document
    is written there with ``drop_reason`` and ``drop_step`` in its metadata, for auditing.
    """

    type = "🀄 - ZHTW"
    key = "step"  # the step's short name: drop_step of excluded documents
    exclusion_writer: DiskWriter | None = None

    def process(self, doc: Document) -> str | None:
        """Change `doc` in place if needed; return a drop reason, or None to keep it."""
        raise NotImplementedError

    def count(self, label: str, value: int = 1) -> None:
        """Add to a counter; flushed into datatrove's stats when the task ends (per-doc updates cost 10%)."""
        self._counts[label] = self._counts.get(label, 0) + value

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._counts: dict[str, int] = {}
        docs_in = chars_in = kept = chars_kept = 0
        writer_ctx = self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext()
        try:
            with writer_ctx as writer:
                for doc in data:
                    n = len(doc.text)
                    docs_in += 1
                    chars_in += n
                    with self.track_time():
                        reason = self.process(doc)
                    if reason is None:
                        kept += 1
                        chars_kept += len(doc.text)
                        yield doc
                        continue
                    self.count(f"dropped/{reason}")
                    self.count(f"chars_dropped/{reason}", n)
                    if writer:
                        doc.metadata.update(drop_reason=reason, drop_step=self.key)
                        writer.write(doc, rank=rank)
        finally:
            for label, value in (
                ("docs_in", docs_in),
                ("chars_in", chars_in),
                ("kept", kept),
                ("chars_kept", chars_kept),
            ):
                self.stat_update(label, value=value)
            for label, value in self._counts.items():
                self.stat_update(label, value=value)


class ZhtwReader(BaseReader):
    """Reads WET, WARC, JSONL, Parquet and text files through `readers.iter_file`.

    Unlike datatrove's stock readers, nothing is skipped silently: every unreadable unit is
    counted as `unreadable/<reason>`, logged once, and written with its file name to
    `<issues_dir>/<rank>.json` so the run's stats can name it. The input entries that were found
    but never opened (`skipped`: a FIFO, a broken link, a directory loop, an unlistable directory)
    are counted the same way by task 0, one unit each, as a file that cannot be opened is.
    """

    name = "📖 zh-TW reader"

    def __init__(
        self,
        files: list[str],
        input_cfg: InputConfig,
        issues_dir: str,
        progress: bool = True,
        skipped: list[ReadIssue] | None = None,
    ):
        super().__init__()
        self.files = files
        self.input_cfg = input_cfg
        self.issues_dir = issues_dir
        self.progress = progress
        self.skipped = list(skipped or [])

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        shard = self.files[rank::world_size]
        issues = IssueLog()
        if rank == 0:
            for issue in self.skipped:
                self._count_issue(issue, issues)
        total_bytes = sum(_size(f) for f in shard)
        with tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            desc=f"task {rank} read",
            disable=not self.progress,
            leave=False,
        ) as bar:
            for path in shard:
                self.stat_update("input_files")
                yield from self._read_file(path, issues)
                bar.update(_size(path))
        issues.save(Path(self.issues_dir) / f"{rank:05d}.json")

    def _read_file(self, path: str, issues: IssueLog) -> DocumentsPipeline:
        """Documents of one file; every unreadable unit is counted and recorded in `issues`."""
        limit = self.input_cfg.max_doc_chars
        for item in iter_file(
            path,
            text_key=self.input_cfg.text_key,
            fallback_text_keys=tuple(self.input_cfg.fallback_text_keys),
            html_extractor=self.input_cfg.html_extractor,
            max_unit_bytes=self.input_cfg.unit_bytes(),
        ):
            if isinstance(item, RawDoc) and len(item.text) > limit:
                detail = f"{len(item.text)} characters > input.max_doc_chars={limit}"
                item = ReadIssue(item.source, "too_long", f"id {item.id}", detail)
            if isinstance(item, ReadIssue):
                self._count_issue(item, issues)
            else:
                self.stat_update("read")
                yield self._to_document(item)

    def _count_issue(self, item: ReadIssue, issues: IssueLog) -> None:
        """One unit read and unreadable: counted by reason, recorded by file, logged (up to a cap)."""
        self.stat_update("read")
        self.stat_update(f"unreadable/{item.reason}")
        if issues.add(item) <= MAX_ISSUES_LOGGED_PER_TASK:
            logger.warning(f"{item.source} ({item.where}): {item.reason}: {item.detail}")

    def _to_document(self, raw: RawDoc) -> Document:
        self.stat_update("chars_read", value=len(raw.text))
        metadata = {"url": raw.url, "source": raw.source, "date": raw.date}
        if raw.title:
            metadata["title"] = raw.title
        return Document(text=raw.text, id=raw.id, metadata=metadata)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class CleanStep(CountingStep):
    """Unicode and whitespace cleanup, then boilerplate-line removal; drops documents left empty."""

    name = "🧹 clean"
    key = "clean"

    def __init__(self, cfg: CleanConfig):
        super().__init__()
        self.cfg = cfg

    def process(self, doc: Document) -> str | None:
        text = clean_text(doc.text, self.cfg)
        if self.cfg.remove_boilerplate:
            tags = tag_lines(text, self.cfg.max_boilerplate_line_chars)
            if tags:  # removed below as boilerplate; the spam_injection step looks at them
                doc.metadata[TAGS_KEY] = tags
            text, removed = remove_boilerplate_lines(text, self.cfg)
            if removed:
                self.count("boilerplate_lines_removed", removed)
        doc.text = text
        return None if text.strip() else "empty_after_cleaning"


class FilterStep(CountingStep):
    """One quality filter from `text.FILTERS`, as its own step with its own drop reason."""

    def __init__(self, filter_name: str, cfg: FilterConfig):
        if filter_name not in FILTERS:
            raise ValueError(f"unknown filter {filter_name!r}; known: {', '.join(FILTERS)}")
        self.name = f"🔻 {filter_name}"  # before super().__init__(), which names the stats after it
        super().__init__()
        self.filter_name = self.key = filter_name
        self.cfg = cfg
        self._fn: Callable[[str, FilterConfig], str | None] = FILTERS[filter_name]

    def process(self, doc: Document) -> str | None:
        return self._fn(doc.text, self.cfg)


class InjectionStep(CountingStep):
    """Drops pages with a spam keyword in the title, first/last line or keyword/tag footer
    (:func:`text.spam_injection`); forgets the footer lines the cleaning step kept aside."""

    name = "🔻 spam_injection"
    key = "spam_injection"

    def __init__(self, cfg: FilterConfig):
        super().__init__()
        self.cfg = cfg

    def process(self, doc: Document) -> str | None:
        tags = doc.metadata.pop(TAGS_KEY, None) or []
        return spam_injection(doc.text, doc.metadata.get("title") or "", tags, self.cfg)


class ScriptStep(CountingStep):
    """Labels the script (traditional/simplified/mixed/none), drops scripts the user does not
    keep (``filters.keep_scripts``), converts to Taiwan Traditional and records the origin."""

    name = "🈶 script + convert"
    key = "script"

    def __init__(self, cfg: ScriptConfig, keep_scripts: list[str] | None = None):
        super().__init__()
        self.cfg = cfg
        self.keep_scripts = frozenset(keep_scripts) if keep_scripts is not None else None
        overrides = load_phrase_overrides() if cfg.phrase_overrides else None
        self.converter = Converter(cfg.convert, cfg.normalize_traditional, cfg.convert_mixed, overrides)

    def process(self, doc: Document) -> str | None:
        label = detect_script(doc.text, self.cfg.min_script_ratio, self.cfg.min_script_chars).label
        doc.metadata["script"] = label
        self.count(f"script/{label}")
        if self.keep_scripts is not None and label not in self.keep_scripts:
            return "script_not_kept"
        doc.text, done = self.converter.convert(doc.text, label)
        doc.metadata["converted"] = done
        doc.metadata["origin"] = origin = origin_of(label, done)
        self.count(f"converted/{done}")
        self.count(f"origin/{origin}")
        return None


MAINLAND_BINS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Lower edges of the stats.json histogram of mainland words per 1000 Han characters."""


def mainland_bin(score: float) -> str:
    """The histogram bin of a score: "0", "0-0.5", ..., ">=10"."""
    if score == 0:
        return "0"
    for lo, hi in zip(MAINLAND_BINS, MAINLAND_BINS[1:]):
        if score < hi:
            return f"{lo:g}-{hi:g}"
    return f">={MAINLAND_BINS[-1]:g}"


class MainlandUsageStep(CountingStep):
    """Scores mainland-only vocabulary left after conversion (``data/mainland_terms.tsv``), per
    1000 Han characters, into ``metadata["mainland_score"]``; counts the distribution per origin;
    drops above ``filters.max_mainland_per_1000_han`` (0 = off) when the document has at least
    ``filters.mainland_min_han`` Han characters."""

    name = "🔻 mainland_usage"
    key = "mainland_usage"

    def __init__(self, cfg: FilterConfig):
        super().__init__()
        self.cfg = cfg

    def process(self, doc: Document) -> str | None:
        _, score = mainland_usage(doc.text)
        doc.metadata["mainland_score"] = round(score, 3)
        self.count(f"mainland/{doc.metadata.get('origin', 'none')}/{mainland_bin(score)}")
        limit = self.cfg.max_mainland_per_1000_han
        if limit and score > limit and han_count(doc.text) >= self.cfg.mainland_min_han:
            return "mainland_usage"
        return None


class Tally(PipelineStep):
    """Counts documents and characters passing a point, so stock datatrove filters can be accounted."""

    type = "🀄 - ZHTW"

    def __init__(self, point: str):
        self.name = f"tally {point}"  # before super().__init__(), which names the stats after it
        super().__init__()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        docs = chars = 0
        try:
            for doc in data:
                docs += 1
                chars += len(doc.text)
                yield doc
        finally:
            self.stat_update("docs", value=docs)
            self.stat_update("chars", value=chars)


def content_key(doc: Document) -> bytes:
    """What exact dedup compares: the text with all whitespace removed."""
    return "".join(doc.text.split()).encode("utf-8")


def exact_dedup_config() -> ExactDedupConfig:
    return ExactDedupConfig(content_getter=content_key)


class ExactSignaturePassthrough(ExactDedupSignature):
    """datatrove's exact-dedup signature stage, but passing documents on so the writer can follow it."""

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        signatures: list[tuple[int, int, int]] = []
        for doc_idx, doc in enumerate(data):
            with self.stats.time_stats:
                self.stat_update("total")
                signatures.extend(self.get_hashes(doc, doc_idx))
            yield doc
        self.save_hashes(rank, signatures)


_MIX = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)


def char_shingles(text: str, n: int) -> np.ndarray:
    """Hashes of every character n-gram of `text` with whitespace removed, vectorised in numpy.

    datatrove's word tokenizers do not segment Chinese (and jieba is 10x slower), so near-dup
    detection on Chinese uses characters: FineWeb's 5-grams become character 5-grams.
    """
    compact = "".join(text.split())
    codes = np.frombuffer(compact.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if codes.size < n:
        if codes.size == 0:
            return np.empty((0, 1), dtype=np.uint64)
        n = int(codes.size)
    with np.errstate(over="ignore"):
        h = np.zeros(codes.size - n + 1, dtype=np.uint64)
        for k in range(n):
            h = (h * _MIX) ^ codes[k : codes.size - n + 1 + k]
        h ^= h >> np.uint64(31)
        h *= _MIX2
        h ^= h >> np.uint64(29)
    # signatures use (a*x + b) mod (2^61 - 1): keep shingles below the prime
    return np.unique(h & np.uint64((1 << 61) - 1)).reshape(-1, 1)


def oph_signature(shingles: np.ndarray, num_hashes: int, seed: int) -> np.ndarray:
    """A MinHash signature by one-permutation hashing with densification.

    Each shingle is hashed once and falls into one of `num_hashes` bins; a bin's value is its
    smallest hash, and empty bins borrow from the next non-empty bin (Shrivastava 2017, rotation).
    Two documents agree in a bin with probability equal to their Jaccard similarity, as with k
    independent permutations, but the cost is O(shingles) instead of O(shingles x k): this was
    the corpus stage's single largest cost (112 hashes per shingle with datatrove's signature).
    Values stay below 2**60, inside the range datatrove's bucket stage accepts.
    """
    x = shingles.reshape(-1) ^ np.uint64((seed * 0x632BE59BD9B4E019 + 0x8CB92BA72F3D8DD7) & (2**64 - 1))
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    bins = (x % np.uint64(num_hashes)).astype(np.intp)
    values = x >> np.uint64(4)
    sig = np.full(num_hashes, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(sig, bins, values)
    empty = sig == np.iinfo(np.uint64).max
    if empty.any():
        full = np.flatnonzero(~empty)
        idx = np.arange(num_hashes)
        src = full[np.searchsorted(full, idx) % full.size]
        dist = ((src - idx) % num_hashes).astype(np.uint64)
        with np.errstate(over="ignore"):
            sig = (sig[src] + dist * np.uint64(0x9E3779B97F4A7C15)) & np.uint64((1 << 60) - 1)
    return sig


class CharTokenizer(WordTokenizer):
    """Characters as words: what near-dup shingles are made of for Chinese.

    Given to datatrove's MinHash stage so it does not load its default word tokenizer (spaCy).
    """

    def word_tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in text.split("\n") if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i, c in enumerate(text) if not c.isspace()]


class CharMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash signature stage with a character n-gram shingler for Chinese and
    one-permutation hashing (see `oph_signature`); buckets, clustering and filtering are stock."""

    def __init__(self, output_folder: str, config: MinhashConfig) -> None:
        super().__init__(output_folder, config=config, language=CharTokenizer("zh"))

    def get_shingles(self, text: str) -> np.ndarray:
        return char_shingles(text, self.config.n_grams)

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        sig = oph_signature(shingles, self.num_hashes, self.config.seed)
        return [part.tolist() for part in np.split(sig, self.config.num_buckets)]


def minhash_config(ngram: int, num_buckets: int, hashes_per_bucket: int, seed: int) -> MinhashConfig:
    return MinhashConfig(
        n_grams=ngram, num_buckets=num_buckets, hashes_per_bucket=hashes_per_bucket, seed=seed
    )


class RankFileReader(JsonlReader):
    """Reads back exactly the intermediate file that the same rank wrote in the filter stage.

    datatrove's dedup stages address documents by (rank, index), so rank r must re-read rank r's
    file, even when some ranks wrote nothing.
    """

    name = "📖 intermediate"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        name = f"{rank:05d}.jsonl"
        if not self.data_folder.exists(name):
            return
        yield from self.read_file(name)


OUTPUT_FIELDS = ("text", "id", "url", "source", "script", "converted", "origin", "mainland_score")
TAGS_KEY = "_tag_lines"


def output_adapter(self: Any, document: Document) -> dict:
    """Flat output records: text, id, url, source, script, converted, origin, mainland_score."""
    meta = document.metadata
    return {"text": document.text, "id": document.id, **{k: meta.get(k) for k in OUTPUT_FIELDS[2:]}}


class DropAdapter:
    """Records of dropped documents: the output fields plus title, drop_reason and drop_step (a stock
    dedup filter does not set them, so the writer's own reason and step are the defaults)."""

    def __init__(self, reason: str | None = None, step: str | None = None):
        self.reason, self.step = reason, step

    def __call__(self, writer: Any, document: Document) -> dict:
        meta = document.metadata
        return {
            **output_adapter(writer, document),
            "title": meta.get("title"),
            "drop_reason": meta.get("drop_reason", self.reason),
            "drop_step": meta.get("drop_step", self.step),
        }


def intermediate_adapter(self: Any, document: Document) -> dict:
    """Intermediate records keep the metadata needed downstream, nothing else."""
    return {"text": document.text, "id": document.id, "metadata": document.metadata}


def _printable(value: str) -> str:
    """`value` as valid UTF-8 (stray surrogates from undecodable bytes escaped), for JSON files."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def load_issues(issues_dir: Path) -> tuple[dict[str, dict[str, int]], list[dict[str, str]]]:
    """Every task's unreadable units: ({file: {reason: count}} for every file, examples per file)."""
    files: dict[str, Counter[str]] = {}
    examples: list[dict[str, str]] = []
    for path in sorted(issues_dir.glob("*.json")):
        saved = json.loads(path.read_text(encoding="utf-8"))
        for source, counts in saved["files"].items():
            files.setdefault(source, Counter()).update(counts)
        for source_examples in saved["examples"].values():
            examples.extend(source_examples)
    return {f: dict(sorted(c.items())) for f, c in sorted(files.items())}, examples
