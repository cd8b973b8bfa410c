"""`zhtw-tok build`: base tokenizer + corpus -> extended tokenizer directory with metadata.

Reads top to bottom: check base and inputs, exit early when the output already matches them, sample the
corpus, train candidates, select and merge, export, verify, and write `zhtw_tokenizer.json` last (an
interrupted build therefore never looks finished).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from zhtw.tokenizer.errors import OutputExistsError, TokenizerStageError
from zhtw.tokenizer.hf import write_hf_files
from zhtw.tokenizer.merge import candidate_pieces, merged_proto, reachable, select_by_savings
from zhtw.tokenizer.spmodel import BaseTokenizer, files_intact, load_base, sha256_file
from zhtw.tokenizer.train import TrainSettings, sample_corpus, train_candidates

Log = Callable[[str], None]

METADATA = "zhtw_tokenizer.json"
CANDIDATES = "candidates.model"
SELECTIONS = ("savings", "learned-order")
FORMAT = "zhtw-tokenizer/1"
DEFAULT_VOCAB_SIZE = 61440


@dataclass
class BuildConfig:
    """Everything that determines a build's result (plus threads and progress, which do not)."""

    base: str
    corpus: list[str]
    output: str
    vocab_size: int = DEFAULT_VOCAB_SIZE
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
    num_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    verify: bool = True
    keep_candidates: bool = False
    overwrite: bool = False
    progress: bool = True
    verbose: bool = False

    def settings(self) -> dict[str, Any]:
        """The result-determining settings, as recorded and compared on reruns."""
        skip = {"base", "corpus", "output", "num_threads", "verify", "overwrite", "progress", "verbose"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


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


def corpus_fingerprint(paths: list[str]) -> list[dict[str, Any]]:
    """Each corpus file with its size and hash: a rerun on changed text is not a no-op."""
    from zhtw.corpus.readers import expand_inputs

    return [{"path": f, "bytes": os.path.getsize(f), "sha256": sha256_file(f)} for f in expand_inputs(paths)]


def build_inputs(cfg: BuildConfig, base: BaseTokenizer) -> dict[str, Any]:
    return {
        "base_sha256": base.sha256,
        "corpus": corpus_fingerprint(cfg.corpus),
        "settings": cfg.settings(),
        "zhtw_version": library_versions()["zhtw"],
    }


def read_metadata(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / METADATA
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _up_to_date(out: Path, inputs: dict[str, Any]) -> dict[str, Any] | None:
    meta = read_metadata(out)
    if meta is None or meta.get("inputs") != inputs or not files_intact(out, meta.get("files", {})):
        return None
    return meta


def build(cfg: BuildConfig, log: Log = print) -> BuildResult:
    """Build the extended tokenizer described by `cfg`; a rerun with the same inputs does nothing."""
    t_start = time.perf_counter()
    base = load_base(cfg.base)
    n_new = cfg.vocab_size - base.size
    if n_new <= 0:
        raise TokenizerStageError(
            f"--vocab-size {cfg.vocab_size:,} is not larger than the base's {base.size:,} pieces; ask for more."
        )
    out = Path(cfg.output)
    inputs = build_inputs(cfg, base)
    done = _up_to_date(out, inputs)
    if done is not None:
        log(f"{out} is up to date (same base, corpus and settings); nothing to do.")
        return BuildResult(out, done, skipped=True)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise OutputExistsError(
            f"{out} is not empty and was not built from these inputs; choose another --output or pass --overwrite."
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / METADATA).unlink(missing_ok=True)
    log(f"base: {base.model_path} ({base.size:,} pieces, sha256 {base.sha256[:12]}…); adding {n_new:,} pieces")

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
        settings = TrainSettings(
            vocab_size=sample.required_chars(cfg.character_coverage) + int(n_new * cfg.candidate_factor) + 100,
            character_coverage=cfg.character_coverage,
            max_sentencepiece_length=cfg.max_piece_length,
            split_by_unicode_script=cfg.split_by_script,
            seed=cfg.seed,
        )
        t0 = time.perf_counter()
        trained = train_candidates(
            sample.train_path, settings, num_threads=cfg.num_threads, verbose=cfg.verbose, log=log
        )
        train_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    cands = candidate_pieces(trained, base.proto, zh_only=cfg.zh_only)
    buildable, unbuildable = reachable(cands, base.proto)
    log(f"candidates: {len(cands):,} new pieces, {len(unbuildable):,} not buildable by merges (skipped)")
    if cfg.selection not in SELECTIONS:
        raise TokenizerStageError(f"--selection {cfg.selection!r} is unknown; choose one of {', '.join(SELECTIONS)}.")
    heldout = sample.heldout if cfg.selection == "savings" else []
    selection = select_by_savings(
        base.proto, buildable, n_new, heldout, rounds=cfg.prune_rounds, num_threads=cfg.num_threads, log=log
    )
    proto = merged_proto(base.proto, selection.pieces)
    select_seconds = time.perf_counter() - t0

    files = write_hf_files(out, proto, base.special)
    if cfg.keep_candidates:
        (out / CANDIDATES).write_bytes(trained.SerializeToString())
        files.append(CANDIDATES)
    added = list(selection.pieces)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
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
        "corpus": {"paths": list(cfg.corpus), **sample.stats},
        "training": {
            "trainer": settings.as_dict(),
            "trained_pieces": len(trained.pieces),
            "candidates": len(cands),
            "unbuildable_skipped": len(unbuildable),
            "unbuildable_examples": unbuildable[:20],
            "seconds": round(train_seconds, 2),
        },
        "selection": {**selection.stats, "seconds": round(select_seconds, 2)},
        "settings": cfg.settings(),
        "num_threads": cfg.num_threads,
        "versions": library_versions(),
        "inputs": inputs,
        "hf": {
            "tokenizer_class": "TokenizersBackend",
            "spaces_promise": "AutoTokenizer ids = sentencepiece ids on every text; LlamaTokenizer equals them on "
            "text not starting with a space (see zhtw.tokenizer.hf)",
        },
    }
    if cfg.verify:
        from zhtw.tokenizer.verify import default_texts, verify_dir

        t0 = time.perf_counter()
        texts = default_texts() + list(sample.heldout[:200])
        report = verify_dir(out, texts, base=base, metadata=meta)
        meta["verify"] = {**report, "seconds": round(time.perf_counter() - t0, 2)}
        log(f"verified: {report['texts']:,} texts, all invariants hold")
    meta["files"] = {name: sha256_file(out / name) for name in files}
    meta["build_seconds"] = round(time.perf_counter() - t_start, 2)
    (out / METADATA).write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {out} ({len(proto.pieces):,} pieces) in {meta['build_seconds']:.0f} s")
    return BuildResult(out, meta, skipped=False)
