"""Stream and sample the corpus, then train a SentencePiece BPE candidate vocabulary on it.

The corpus is read twice through `zhtw.corpus.textio.iter_texts` (once to measure it, once to sample), so any
corpus size works in bounded memory. Documents are drawn with a seeded generator: a held-back share (for
choosing pieces by measured savings, never trained on) and a training sample of at most `sample_mb`.
"""

from __future__ import annotations

import io
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sentencepiece as spm

from zhtw.corpus.textio import TextStats, iter_texts
from zhtw.tokenizer.charclass import count_han
from zhtw.tokenizer.errors import CorpusTooSmallError
from zhtw.tokenizer.spmodel import ModelProto

Log = Callable[[str], None]

MAX_LINE_BYTES = 8192
RESERVED_PIECES = 3 + 256  # <unk>, <s>, </s> and the 256 byte-fallback pieces of every trained model
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")


@dataclass
class CorpusSample:
    """Where the sampled training lines are and the held-back documents, with what was read."""

    train_path: Path
    heldout: list[str]
    stats: dict[str, Any] = field(default_factory=dict)
    char_counts: Counter[str] = field(default_factory=Counter)

    def required_chars(self, coverage: float) -> int:
        """How many characters SentencePiece keeps at this coverage (it needs that many vocabulary slots)."""
        total = sum(self.char_counts.values())
        kept = acc = 0
        for _, n in self.char_counts.most_common():
            if acc >= coverage * total:
                break
            acc += n
            kept += 1
        return kept


def _progress(total: int | None, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled, file=sys.stderr, leave=False)


def split_lines(text: str, max_bytes: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Non-empty lines of `text`, long ones cut at sentence ends (then hard) to fit the trainer's limit."""
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if len(line.encode("utf-8")) <= max_bytes:
            yield line
            continue
        buf = ""
        for part in _SENTENCE_END.split(line):
            while len(part.encode("utf-8")) > max_bytes:  # no sentence end for too long: cut hard
                cut = max_bytes // 4
                if buf:
                    yield buf
                    buf = ""
                yield part[:cut]
                part = part[cut:]
            if len((buf + part).encode("utf-8")) > max_bytes:
                yield buf
                buf = part
            else:
                buf += part
        if buf.strip():
            yield buf


def _describe(stats: TextStats) -> str:
    """What was read, for an error message: files, documents, empty ones and unreadable units by reason."""
    parts = [f"{stats.files:,} files", f"{stats.documents:,} documents", f"{stats.empty:,} empty"]
    if stats.issues:
        by_reason = ", ".join(f"{n:,} {reason}" for reason, n in stats.issues.most_common())
        parts.append(f"unreadable: {by_reason}")
    return "; ".join(parts)


def sample_corpus(
    paths: list[str],
    workdir: Path,
    *,
    text_key: str = "text",
    sample_mb: float = 256.0,
    heldout_mb: float = 3.0,
    seed: int = 0,
    progress: bool = True,
    log: Log = print,
) -> CorpusSample:
    """Measure the corpus, then draw a deterministic training sample (lines in a file) and held-back docs."""
    t0 = time.perf_counter()
    total_bytes, total_docs = 0, 0
    measured = TextStats()
    with _progress(None, "measuring corpus", progress) as bar:
        for text in iter_texts(paths, text_key, stats=measured):
            n = len(text.encode("utf-8"))
            total_bytes += n
            total_docs += 1
            bar.update(n)
    if total_docs == 0:
        raise CorpusTooSmallError(
            f"no text found in the corpus ({_describe(measured)}, text key {text_key!r}); "
            "check --corpus and --text-key."
        )
    heldout_cap = int(heldout_mb * 1e6)
    heldout_share = min(0.2, heldout_cap / total_bytes) if total_docs > 1 else 0.0
    train_rate = min(1.0, sample_mb * 1e6 / max(1.0, total_bytes * (1.0 - heldout_share)))

    rng = random.Random(seed)
    heldout: list[str] = []
    heldout_bytes = train_bytes = train_docs = train_lines = train_chars = train_han = 0
    stats = TextStats()
    chars: Counter[str] = Counter()
    train_path = workdir / "train_sample.txt"
    with open(train_path, "w", encoding="utf-8") as out, _progress(total_bytes, "sampling corpus", progress) as bar:
        for text in iter_texts(paths, text_key, stats=stats):
            n = len(text.encode("utf-8"))
            bar.update(n)
            r_held, r_train = rng.random(), rng.random()
            if r_held < heldout_share and heldout_bytes + n <= heldout_cap * 1.5:
                heldout.append(text)
                heldout_bytes += n
            elif r_train < train_rate:
                train_docs += 1
                train_bytes += n
                train_chars += len(text)
                train_han += count_han(text)
                chars.update(text)
                for line in split_lines(text):
                    out.write(line + "\n")
                    train_lines += 1
    if train_lines == 0:
        raise CorpusTooSmallError(
            f"the training sample is empty ({_describe(stats)}); give more text or raise --sample-mb."
        )
    sample = CorpusSample(
        train_path=train_path,
        heldout=heldout,
        char_counts=chars,
        stats={
            "files": stats.files,
            "documents_read": stats.documents,
            "bytes_read": total_bytes,
            "unreadable_units": stats.unreadable,
            "train_documents": train_docs,
            "train_bytes": train_bytes,
            "train_characters": train_chars,
            "train_han_characters": train_han,
            "train_distinct_characters": len(chars),
            "train_lines": train_lines,
            "train_sample_rate": round(train_rate, 6),
            "heldout_documents": len(heldout),
            "heldout_bytes": heldout_bytes,
            "seconds": round(time.perf_counter() - t0, 2),
        },
    )
    log(
        f"corpus: {total_docs:,} documents, {total_bytes / 1e6:.1f} MB; training sample {train_docs:,} documents "
        f"({train_bytes / 1e6:.1f} MB, {train_lines:,} lines), held back {len(heldout):,} documents "
        f"({heldout_bytes / 1e6:.2f} MB)"
    )
    return sample


def training_request(required_chars: int, n_new: int, candidate_factor: float) -> int:
    """SentencePiece's vocab_size for `n_new` new pieces: the characters, the factor's merges and a margin.

    SentencePiece also spends `RESERVED_PIECES` slots on meta and byte pieces and refuses a size below
    characters + those. A request it accepts is kept as it always was (results stay reproducible); a
    smaller one (a small addition) gets the reserved slots on top, so the merges still fit.
    """
    request = required_chars + int(n_new * candidate_factor) + 100
    if request > required_chars + RESERVED_PIECES:
        return request
    return request + RESERVED_PIECES


@dataclass
class TrainSettings:
    """SentencePiece trainer settings chosen for Chinese; recorded in the metadata."""

    vocab_size: int
    character_coverage: float = 0.9995
    max_sentencepiece_length: int = 16
    split_digits: bool = True
    byte_fallback: bool = True
    split_by_unicode_script: bool = False  # lets Han merge with punctuation/digits: ~7% fewer tokens measured
    split_by_whitespace: bool = True
    add_dummy_prefix: bool = False
    remove_extra_whitespaces: bool = False
    normalization_rule_name: str = "identity"
    max_sentence_length: int = MAX_LINE_BYTES
    hard_vocab_limit: bool = False
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_candidates(
    train_path: Path, settings: TrainSettings, *, num_threads: int | None = None, verbose: bool = False, log: Log = print
) -> ModelProto:
    """Train a SentencePiece BPE vocabulary on the sampled lines and return its proto (learned order)."""
    threads = num_threads or os.cpu_count() or 1
    opts = settings.as_dict()
    seed = opts.pop("seed")
    spm.set_random_generator_seed(seed)
    buf = io.BytesIO()
    t0 = time.perf_counter()
    log(f"training SentencePiece BPE: {settings.vocab_size:,} pieces on {threads} threads ...")
    try:
        spm.SentencePieceTrainer.train(
            input=str(train_path),
            model_type="bpe",
            model_writer=buf,
            num_threads=threads,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            allow_whitespace_only_pieces=False,
            minloglevel=0 if verbose else 2,
            **opts,
        )
    except RuntimeError as e:
        raise CorpusTooSmallError(
            f"SentencePiece could not train {settings.vocab_size:,} pieces on this sample: {e}. Give more text "
            "(--corpus, --sample-mb) or lower --character-coverage."
        ) from e
    proto = ModelProto()
    proto.ParseFromString(buf.getvalue())
    log(f"trained {len(proto.pieces):,} pieces in {time.perf_counter() - t0:.1f} s")
    return proto
