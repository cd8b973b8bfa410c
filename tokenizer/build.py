"""`zhtw-tok build`: base tokenizer + corpus -> extended tokenizer directory with metadata.

Reads top to bottom: check the settings, the base (fully) and the inputs, refuse an output that overlaps
an input or that zhtw did not create, lock the output, exit early when it already matches the inputs,
sample the corpus, train candidates, select and merge, export, verify, and write `zhtw_tokenizer.json`
last and atomically (an interrupted build never looks finished; a rerun clears what it left and builds again).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from zhtw.common.errors import OutputError
from zhtw.common.fsutil import (
    LOCK_NAME,
    OWNER_MARKER,
    atomic_write_bytes,
    check_disjoint,
    clear_owned_output,
    output_lock,
    show_path,
)
from zhtw.tokenizer.errors import MetadataError, OutputExistsError, UsageError
from zhtw.tokenizer.hf import HF_FILES, write_hf_files
from zhtw.tokenizer.merge import candidate_pieces, merged_proto, reachable, select_by_savings
from zhtw.tokenizer.meta import TOKENIZER_FORMAT as FORMAT
from zhtw.tokenizer.meta import TOKENIZER_METADATA as METADATA
from zhtw.tokenizer.meta import TokenizerMeta, read_metadata
from zhtw.tokenizer.spmodel import BaseTokenizer, ModelProto, files_intact, sha256_file
from zhtw.tokenizer.train import (
    CorpusSample,
    TrainSettings,
    sample_corpus,
    train_candidates,
    training_request,
)
from zhtw.tokenizer.verify import default_texts, verify_dir

Log = Callable[[str], None]

CANDIDATES = "candidates.model"
SELECTIONS = ("savings", "learned-order")
DEFAULT_VOCAB_SIZE = 61440
MAX_VOCAB_SIZE = 1 << 20
COMMAND = "zhtw-tok build"
BUILD_FILES = (*HF_FILES, CANDIDATES, METADATA)  # everything a build writes (besides the marker and the lock)
TRAIN_ATTEMPTS = 4  # trainings at most, when a small addition's CJK candidates fall short


@dataclass
class BuildConfig:
    """Everything that determines a build's result (plus threads and progress, which do not)."""

    base: str
    corpus: list[str]
    output: str
    vocab_size: int | None = None  # total size; default: 61,440 for SentencePiece, base + new_tokens otherwise
    new_tokens: int | None = None  # tokens to add; default: 32,768 for byte-level BPE
    text_key: str = "text"
    sample_mb: float = 256.0
    heldout_mb: float = 3.0
    candidate_factor: float = 1.5
    seed: int = 0
    zh_only: bool = True
    character_coverage: float = 0.9995
    max_piece_length: int = 16
    prune_rounds: int = 3
    selection: str = "learned-order"
    split_by_script: bool = False
    max_token_chars: int | None = None  # byte-level BPE: longest new token, in characters (None: no limit)
    num_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    verify: bool = True
    keep_candidates: bool = False
    overwrite: bool = False
    progress: bool = True
    verbose: bool = False

    def validate(self) -> None:
        """Refuse values no build can use (NaN, negative, zero threads ...) before anything is read."""
        checks = [
            (self.vocab_size is None or 1 <= self.vocab_size <= MAX_VOCAB_SIZE,
             f"--vocab-size must be from 1 to {MAX_VOCAB_SIZE:,}"),
            (self.new_tokens is None or 1 <= self.new_tokens <= MAX_VOCAB_SIZE,
             f"--new-tokens must be from 1 to {MAX_VOCAB_SIZE:,}"),
            (self.vocab_size is None or self.new_tokens is None, "give --vocab-size or --new-tokens, not both"),
            (self.max_token_chars is None or self.max_token_chars >= 2, "--max-token-chars must be 2 or more"),
            (_finite(self.sample_mb) and self.sample_mb > 0, "--sample-mb must be a number above 0"),
            (_finite(self.heldout_mb) and self.heldout_mb >= 0, "--heldout-mb must be a number, 0 or more"),
            (_finite(self.candidate_factor) and self.candidate_factor >= 1,
             "--candidate-factor must be at least 1"),
            (_finite(self.character_coverage) and 0 < self.character_coverage <= 1,
             "--character-coverage must be above 0 and at most 1"),
            (1 <= self.max_piece_length <= 512, "--max-piece-length must be from 1 to 512 (SentencePiece)"),
            (self.prune_rounds >= 1, "--prune-rounds must be 1 or more"),
            (self.num_threads >= 1, "--workers must be 1 or more"),
            (0 <= self.seed < 1 << 32, "--seed must be between 0 and 4294967295"),
            (self.selection in SELECTIONS, f"--selection must be one of {', '.join(SELECTIONS)}"),
            (bool(self.text_key), "--text-key must not be empty"),
            (bool(self.corpus), "--corpus needs at least one path"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message + ".")

    def settings(self) -> dict[str, Any]:
        """The result-determining settings, as recorded and compared on reruns."""
        skip = {"base", "corpus", "output", "num_threads", "verify", "overwrite", "progress", "verbose"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class BuildResult:
    output: Path
    metadata: dict[str, Any]
    skipped: bool


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("zhtw", "sentencepiece", "protobuf", "tokenizers", "transformers"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def corpus_fingerprint(files: list[str]) -> list[dict[str, Any]]:
    """Each corpus file with its size and hash: a rerun on changed text is not a no-op (names printable).

    A non-regular file (a FIFO, a device) is recorded without a hash: reading it could block forever.
    """
    out: list[dict[str, Any]] = []
    for f in files:
        if os.path.isfile(f):
            out.append({"path": show_path(f), "bytes": os.path.getsize(f), "sha256": sha256_file(f)})
        else:
            out.append({"path": show_path(f), "not_a_regular_file": True})
    return out


def build_inputs(cfg: BuildConfig, base: BaseTokenizer, files: list[str]) -> dict[str, Any]:
    return {
        "base_sha256": base.sha256,
        "corpus": corpus_fingerprint(files),
        "settings": cfg.settings(),
        "zhtw_version": library_versions()["zhtw"],
    }


def _metadata_or_none(out: Path) -> dict[str, Any] | None:
    try:
        return read_metadata(out)
    except MetadataError:
        return None


def _up_to_date(out: Path, inputs: dict[str, Any]) -> dict[str, Any] | None:
    meta = _metadata_or_none(out)
    if meta is None or meta.get("inputs") != inputs or not files_intact(out, meta.get("files", {})):
        return None
    return meta


def _entries(out: Path) -> list[Path]:
    """What an output directory holds besides zhtw's ownership marker and lock."""
    return [e for e in out.iterdir() if e.name not in (OWNER_MARKER, LOCK_NAME)]


def _claimable(out: Path) -> bool:
    """Whether we may write into `out`: new, empty, or created by a zhtw command (it carries the marker)."""
    return not out.exists() or (out / OWNER_MARKER).is_file() or not _entries(out)


def _is_leftover(entry: Path) -> bool:
    """A file an interrupted build writes: one of its outputs or an atomic write's temporary file."""
    if not entry.is_file() or entry.is_symlink():
        return False
    name = entry.name
    return name in BUILD_FILES or (name.startswith(".") and name.endswith(".tmp"))


def _check_output(cfg: BuildConfig, base: BaseTokenizer, files: list[str]) -> Path:
    """The output path; refused (before anything is written) when it is a file or overlaps an input."""
    out = Path(cfg.output).expanduser()
    if _not_utf8(str(out)):
        raise OutputError(
            f"--output {show_path(out)} is not a valid UTF-8 name; Hugging Face cannot load a tokenizer from "
            "such a path: choose a UTF-8 name."
        )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(
            f"--output {show_path(out)} exists and is not a directory; choose another path."
        )
    inputs = [Path(cfg.base).expanduser(), base.model_path, *cfg.corpus, *files]
    check_disjoint(out, inputs, what="--output")
    return out


def _not_utf8(name: str) -> bool:
    """Whether a path string carries undecodable bytes (surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse_unclaimed(out: Path, overwrite: bool) -> None:
    """`out` holds files zhtw did not write: never touch them, with or without --overwrite."""
    if overwrite:
        clear_owned_output(out, command=COMMAND)  # raises: the directory has no ownership marker
    raise OutputExistsError(
        f"{show_path(out)} is not empty and was not created by {COMMAND}; choose another --output "
        "(nothing there was changed)."
    )


def _make_room(out: Path, inputs: dict[str, Any], overwrite: bool, log: Log) -> None:
    """Empty our own output directory when allowed: --overwrite, or what an interrupted build left."""
    entries = _entries(out)
    if not entries:
        return
    if overwrite:
        clear_owned_output(out, command=COMMAND)
        log(f"--overwrite: cleared {len(entries)} entries of {show_path(out)}")
        return
    meta = _metadata_or_none(out)
    if meta is None and all(_is_leftover(e) for e in entries):
        for e in entries:
            e.unlink()
        log(f"{show_path(out)}: an interrupted build left {len(entries)} files; building again")
        return
    if meta is None:
        why = "holds files that are not a finished build"
    elif meta.get("inputs") != inputs:
        why = "was built from other inputs (base, corpus or settings)"
    else:
        why = "holds a build whose files no longer match their recorded hashes"
    raise OutputExistsError(
        f"{show_path(out)} {why}; choose another --output or pass --overwrite to replace it."
    )


def build(cfg: BuildConfig, log: Log = print) -> BuildResult:
    """Build the extended tokenizer described by `cfg`; a rerun with the same inputs does nothing.

    The base's format picks the backend (`zhtw.tokenizer.backends`); output handling, locking, reruns and
    metadata are the same for every format.
    """
    from zhtw.corpus.readers import expand_inputs
    from zhtw.tokenizer.backends import backend_for_base

    t_start = time.perf_counter()
    cfg.validate()
    backend = backend_for_base(cfg.base)
    base = backend.load_base(cfg.base)
    n_new = _new_tokens(cfg, base, backend)
    files = expand_inputs(cfg.corpus)
    out = _check_output(cfg, base, files)
    inputs = build_inputs(cfg, base, files)
    if not _claimable(out):
        done = _up_to_date(out, inputs)  # a build by an older zhtw (no marker) that still matches
        if done is None:
            _refuse_unclaimed(out, cfg.overwrite)
        log(f"{show_path(out)} is up to date (same base, corpus and settings); nothing to do.")
        return BuildResult(out, done, skipped=True)
    created = not out.exists()
    with output_lock(out, command=COMMAND):
        done = _up_to_date(out, inputs)
        if done is not None:
            log(f"{show_path(out)} is up to date (same base, corpus and settings); nothing to do.")
            return BuildResult(out, done, skipped=True)
        _make_room(out, inputs, cfg.overwrite, log)
        try:
            (out / METADATA).unlink(missing_ok=True)
            log(f"base: {show_path(base.model_path)} ({backend.name}, {base.size:,} ids, sha256 "
                f"{base.sha256[:12]}…); adding {n_new:,} tokens")  # fmt: skip
            built = backend.build_into(out, cfg, base, n_new, files, log)
            return _finish(out, cfg, built, inputs, log, t_start)
        except BaseException:
            _remove_partial(out, created)
            raise


def _new_tokens(cfg: BuildConfig, base: Any, backend: Any) -> int:
    """How many tokens to add: --new-tokens, or --vocab-size minus the base, or the backend's default."""
    if cfg.new_tokens is not None:
        return cfg.new_tokens
    default_total = DEFAULT_VOCAB_SIZE if backend.name == "sentencepiece" else None
    total = cfg.vocab_size or default_total
    if total is None:
        return backend.default_new_tokens()
    if total <= base.size:
        raise UsageError(
            f"--vocab-size {total:,} is not larger than the base's {base.size:,} ids; ask for more "
            "(or give --new-tokens)."
        )
    return total - base.size


def _finish(
    out: Path, cfg: BuildConfig, built: dict[str, Any], inputs: dict[str, Any], log: Log, t_start: float
) -> BuildResult:
    """The metadata every backend shares, written last: a build without it never looks finished."""
    meta = {
        "format": FORMAT,
        "backend": built["meta"].get("backend", "sentencepiece"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **built["meta"],
        "settings": cfg.settings(),
        "num_threads": cfg.num_threads,
        "versions": library_versions(),
        "inputs": inputs,
    }
    meta["files"] = {name: sha256_file(out / name) for name in built["files"]}
    meta["build_seconds"] = round(time.perf_counter() - t_start, 2)
    TokenizerMeta.from_dict(meta, where=out / METADATA).write(out)  # typed, versioned, atomic
    log(f"wrote {show_path(out)} ({meta['vocab_size']:,} ids, {meta['num_added']:,} added) in "
        f"{meta['build_seconds']:.0f} s")  # fmt: skip
    return BuildResult(out, meta, skipped=False)


def _remove_partial(out: Path, created: bool) -> None:
    """After a failed build: remove the files it wrote (never a finished build: metadata comes last), and the
    directory itself when this run created it, so a failure leaves no partial output behind."""
    if _metadata_or_none(out) is not None:  # finished (e.g. only the last log line failed): keep it
        return
    for entry in _entries(out):
        if _is_leftover(entry):
            entry.unlink(missing_ok=True)
    if created and not _entries(out):
        for name in (OWNER_MARKER, LOCK_NAME):
            (out / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            out.rmdir()


def _train(
    cfg: BuildConfig, base: BaseTokenizer, n_new: int, sample: CorpusSample, log: Log
) -> dict[str, Any]:
    """Train candidates; a small addition whose CJK candidates fall short retrains with more merges."""
    request = training_request(sample.required_chars(cfg.character_coverage), n_new, cfg.candidate_factor)
    seconds = 0.0
    for attempt in range(1, TRAIN_ATTEMPTS + 1):
        settings = TrainSettings(
            vocab_size=request,
            character_coverage=cfg.character_coverage,
            max_sentencepiece_length=cfg.max_piece_length,
            split_by_unicode_script=cfg.split_by_script,
            seed=cfg.seed,
        )
        t0 = time.perf_counter()
        trained = train_candidates(
            sample.train_path, settings, num_threads=cfg.num_threads, verbose=cfg.verbose, log=log
        )
        seconds += time.perf_counter() - t0
        cands = candidate_pieces(trained, base.proto, zh_only=cfg.zh_only)
        buildable, unbuildable = reachable(cands, base.proto)
        exhausted = len(trained.pieces) < request  # the sample has no more merges to learn
        if len(buildable) >= n_new or exhausted or attempt == TRAIN_ATTEMPTS:
            break
        log(f"only {len(buildable):,} new buildable pieces of {n_new:,}; training again with more merges")
        request += max(2 * (n_new - len(buildable)), request - sample.required_chars(cfg.character_coverage))
    return {
        "trained": trained, "settings": settings, "candidates": cands, "buildable": buildable,
        "unbuildable": unbuildable, "seconds": seconds, "attempts": attempt,
    }


def build_sentencepiece(
    out: Path, cfg: BuildConfig, base: BaseTokenizer, n_new: int, files: list[str], log: Log
) -> dict[str, Any]:
    """SentencePiece backend: train candidates, select, merge, write and verify into `out` (locked, ours)."""
    with tempfile.TemporaryDirectory(prefix="zhtw-tok-") as work:
        sample = sample_corpus(
            cfg.corpus,
            Path(work),
            text_key=cfg.text_key,
            sample_mb=cfg.sample_mb,
            heldout_mb=cfg.heldout_mb,
            seed=cfg.seed,
            progress=cfg.progress,
            log=log,
        )
        run = _train(cfg, base, n_new, sample, log)

    t0 = time.perf_counter()
    cands, buildable, unbuildable = run["candidates"], run["buildable"], run["unbuildable"]
    log(f"candidates: {len(cands):,} new pieces, {len(unbuildable):,} not buildable by merges (skipped)")
    heldout = sample.heldout if cfg.selection == "savings" else []
    selection = select_by_savings(
        base.proto, buildable, n_new, heldout, rounds=cfg.prune_rounds, num_threads=cfg.num_threads, log=log
    )
    proto = merged_proto(base.proto, selection.pieces)
    select_seconds = time.perf_counter() - t0

    written = write_hf_files(out, proto, base.special)
    if cfg.keep_candidates:
        atomic_write_bytes(out / CANDIDATES, run["trained"].SerializeToString())
        written.append(CANDIDATES)
    meta = _metadata(cfg, base, proto, selection, sample, run, select_seconds)
    if cfg.verify:
        t0 = time.perf_counter()
        texts = default_texts() + list(sample.heldout[:200])
        report = verify_dir(out, texts, base=base, metadata={"format": FORMAT, **meta})
        meta["verify"] = {**report, "seconds": round(time.perf_counter() - t0, 2)}
        log(f"verified: {report['texts']:,} texts, all invariants hold")
    return {"meta": meta, "files": written}


def _metadata(
    cfg: BuildConfig,
    base: BaseTokenizer,
    proto: ModelProto,
    selection: Any,
    sample: CorpusSample,
    run: dict[str, Any],
    select_seconds: float,
) -> dict[str, Any]:
    """Everything later stages and reruns read back: base identity, pieces, corpus, training, versions."""
    added = list(selection.pieces)
    return {
        "backend": "sentencepiece",
        "base": base.identity(),
        "vocab_size": len(proto.pieces),
        "base_vocab_size": base.size,
        "num_added": len(added),
        "added_id_range": [base.size, len(proto.pieces) - 1],
        "added_counts": {
            "single_character": sum(1 for p in added if len(p) == 1),
            "multi_character": sum(1 for p in added if len(p) > 1),
            "with_word_start_marker": sum(1 for p in added if "▁" in p),
        },
        "added_pieces": added,
        "corpus": {"paths": [show_path(p) for p in cfg.corpus], **sample.stats},
        "training": {
            "trainer": run["settings"].as_dict(),
            "attempts": run["attempts"],
            "trained_pieces": len(run["trained"].pieces),
            "candidates": len(run["candidates"]),
            "unbuildable_skipped": len(run["unbuildable"]),
            "unbuildable_examples": run["unbuildable"][:20],
            "seconds": round(run["seconds"], 2),
        },
        "selection": {**selection.stats, "seconds": round(select_seconds, 2)},
        "hf": {
            "tokenizer_class": "TokenizersBackend",
            "spaces_promise": "AutoTokenizer ids = sentencepiece ids on every text; LlamaTokenizer equals them on "
            "text not starting with a space (see zhtw.tokenizer.hf)",
        },
    }
