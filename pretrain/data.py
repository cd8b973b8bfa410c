"""Training data for continued pretraining: tokenise documents, pack them into full blocks, cache them.

Documents come from `zhtw.corpus.textio.iter_texts` (anything the corpus stage reads or writes). Each
document becomes ``[BOS] tokens EOS`` (BOS when the tokenizer has one and ``add_bos``); the token stream
is cut into blocks of exactly ``block_size`` and the last, shorter piece is dropped and counted, so every
row is full and ``labels = input_ids`` needs no padding mask.

A share of the documents (not blocks) is held out for evaluation, chosen by seed, so no evaluation
text is ever trained on. The packed blocks are written as Arrow files under a directory named by a
hash of everything that decides their content (tokenizer files, data files' paths, sizes and mtimes,
block size, split settings, format version); reruns and resumed runs memory-map them instead of
tokenising again. The directory appears by one rename, so a killed run never leaves a cache that
looks complete. Streaming mode tokenises and packs on the fly and yields the same training blocks in
the same order as the cached mode, for corpora larger than memory or disk.

Weighted mixtures (`weights`, one per `data_files` entry, e.g. 0.9 zh-TW and 0.1 English replay): each entry
is packed on its own, then the training blocks are drawn in a fixed, evenly spread order so that each source
makes up its weight of the blocks. The source that needs the most blocks for its weight is used exactly once;
the others repeat (counted as epochs per source), nothing is dropped. The order is written into the cache, so
a resumed run sees the same blocks; the weights are part of the cache key and the stats (`mixture`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import show_path
from zhtw.corpus.readers import InputError, expand_inputs
from zhtw.corpus.textio import TextStats, iter_texts

if TYPE_CHECKING:  # imported where used, so tokenising worker processes start fast
    import datasets

__all__ = [
    "FORMAT_VERSION",
    "DataError",
    "NoDocumentsError",
    "PackedData",
    "TokenizerLoadError",
    "build_packed_data",
    "cache_key",
    "default_cache_dir",
    "load_tokenizer",
    "mixture_schedule",
    "tokenizer_sha256",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bump when the packing or the cache layout changes; part of the cache key."""

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
"""Files whose content decides the token ids (and BOS/EOS), hashed into the tokenizer identity."""

_META = "meta.json"
_TRAIN = "train.arrow"
_EVAL = "eval.arrow"
_BATCH_DOCS = 256
_WRITE_BLOCKS = 1024
_SCHEMA = pa.schema([pa.field("input_ids", pa.list_(pa.int32()))])


def _features() -> datasets.Features:
    import datasets

    return datasets.Features({"input_ids": datasets.List(datasets.Value("int32"))})


class DataError(ValueError, ZhtwError):
    """Training data cannot be built as asked; the message says what to change."""


class NoDocumentsError(DataError):
    """The inputs hold no non-empty document."""


class TokenizerLoadError(DataError):
    """The tokenizer directory is missing or holds no usable tokenizer."""


@dataclass
class PackedData:
    """Packed blocks ready for the Trainer, where they are cached, and what went into them."""

    train: datasets.Dataset | datasets.IterableDataset  # rows {"input_ids": list[int] of len block_size}
    eval: datasets.Dataset | None  # same, from the held-out documents
    cache_dir: Path | None  # where the packed tokens live (None in streaming mode)
    stats: dict[str, Any]


# --------------------------------------------------------------------------- tokenizer


def load_tokenizer(tokenizer_dir: str | os.PathLike[str]) -> Any:
    """Load the tokenizer of a directory: its ``tokenizer.json`` when present, else ``tokenizer.model``.

    A directory holding only a SentencePiece ``tokenizer.model`` (llama2.c models, the original Llama-2)
    is loaded with `LlamaTokenizer`, because `AutoTokenizer` drops the word-start marker there.
    """
    from transformers import AutoTokenizer, LlamaTokenizer

    path = Path(tokenizer_dir).expanduser()
    if not path.is_dir():
        raise TokenizerLoadError(
            f"tokenizer directory {str(tokenizer_dir)!r} does not exist; build it with "
            "`zhtw-tok build --output DIR` (or pass a Hugging Face model/tokenizer directory)."
        )
    try:
        if (path / "tokenizer.json").is_file():
            tok = AutoTokenizer.from_pretrained(str(path))
        elif (path / "tokenizer.model").is_file():
            tok = LlamaTokenizer.from_pretrained(str(path))
        else:
            raise TokenizerLoadError(
                f"{path} holds neither tokenizer.json nor tokenizer.model; point --tokenizer at the output "
                "directory of `zhtw-tok build` (or a Hugging Face tokenizer directory)."
            )
    except TokenizerLoadError:
        raise
    except Exception as exc:  # transformers raises many types for a broken directory
        raise TokenizerLoadError(
            f"cannot load the tokenizer in {path}: {type(exc).__name__}: {exc}. Rebuild it with "
            "`zhtw-tok build --overwrite` or point at a valid tokenizer directory."
        ) from exc
    if tok.eos_token_id is None:
        raise TokenizerLoadError(
            f"the tokenizer in {path} has no EOS token, which separates packed documents; "
            "use a tokenizer with an eos_token (every Llama tokenizer has '</s>')."
        )
    return tok


def tokenizer_sha256(tokenizer_dir: str | os.PathLike[str]) -> str:
    """SHA-256 over the names and contents of the files that decide the token ids (`TOKENIZER_FILES`)."""
    path = Path(tokenizer_dir).expanduser()
    digest = hashlib.sha256()
    found = False
    for name in TOKENIZER_FILES:
        file = path / name
        if file.is_file():
            found = True
            digest.update(name.encode() + b"\0" + _file_sha256(file).encode() + b"\n")
    if not found:
        raise TokenizerLoadError(
            f"{path} holds none of {', '.join(TOKENIZER_FILES)}; point at the output directory of "
            "`zhtw-tok build` (or a Hugging Face tokenizer directory)."
        )
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- cache key


def default_cache_dir() -> Path:
    """``$ZHTW_CACHE/packed`` when ZHTW_CACHE is set, else ``~/.cache/zhtw/packed``."""
    root = os.environ.get("ZHTW_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "zhtw"
    return base / "packed"


def cache_key(
    files: list[str],
    tokenizer_hash: str,
    block_size: int,
    *,
    eval_fraction: float,
    eval_max_docs: int | None,
    seed: int,
    add_bos: bool,
    text_key: str,
    weights: Sequence[float] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The cache key (24 hex digits) and the JSON-able contents it hashes.

    Data files are identified by absolute path, size and mtime_ns: editing, replacing or touching a
    file changes the key (cheap on a 100 GB corpus, where content hashes would cost a full read).
    """
    contents: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "tokenizer_sha256": tokenizer_hash,
        "files": [_file_identity(f) for f in files],
        "block_size": block_size,
        "eval_fraction": eval_fraction,
        "eval_max_docs": eval_max_docs,
        "seed": seed,
        "add_bos": add_bos,
        "text_key": text_key,
    }
    if weights is not None:  # only then: the keys of unweighted caches stay what they were
        contents["weights"] = [float(w) for w in weights]
    blob = json.dumps(contents, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:24], contents


def _file_identity(path: str) -> dict[str, Any]:
    """Path (any bytes: names that are not UTF-8 are escaped, never a crash), size and mtime of a data file."""
    st = os.stat(path)
    return {"path": show_path(os.path.abspath(path)), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# --------------------------------------------------------------------------- split and tokenise


@dataclass(frozen=True)
class _Plan:
    """What decides the blocks, picklable for the streaming generator."""

    files: list[str]
    tokenizer_dir: str
    block_size: int
    text_key: str
    add_bos: bool
    eval_idx: frozenset[int]


def _eval_indices(n_docs: int, eval_fraction: float, eval_max_docs: int | None, seed: int) -> set[int]:
    """Indices of the held-out documents: round(n x fraction), at least 1 when n >= 2, capped."""
    if n_docs < 2 or eval_fraction <= 0 or eval_max_docs == 0:
        return set()
    n_eval = max(1, round(n_docs * eval_fraction))
    if eval_max_docs is not None:
        n_eval = min(n_eval, eval_max_docs)
    n_eval = min(n_eval, n_docs - 1)
    return set(random.Random(seed).sample(range(n_docs), n_eval))


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode(tok: Any, texts: list[str], bos: int | None, eos: int) -> list[list[int]]:
    """``[BOS] ids EOS`` per text; special tokens are added here, not by the tokenizer's template.

    `tok` is a `tokenizers.Tokenizer` (the Rust tokenizer behind a fast HF tokenizer: same ids,
    batched on all cores) or a slow HF tokenizer.
    """
    if hasattr(tok, "encode_batch_fast"):
        ids = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    else:
        ids = tok(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    head = [bos] if bos is not None else []
    return [head + x + [eos] for x in ids]


_WORKER: tuple[Any, int | None, int] | None = None


def _worker_init(backend: str, bos: int | None, eos: int) -> None:
    global _WORKER
    from tokenizers import Tokenizer

    _WORKER = (Tokenizer.from_str(backend), bos, eos)


def _worker_encode(texts: list[str]) -> list[list[int]]:
    assert _WORKER is not None, "_worker_init runs first in every worker"
    backend, bos, eos = _WORKER
    return _encode(backend, texts, bos, eos)


def _encoded_batches(
    texts: Iterable[str], tok: Any, add_bos: bool, num_proc: int
) -> Iterator[list[list[int]]]:
    """Encoded documents in input order, batch by batch; ``num_proc > 1`` encodes in worker processes.

    One process already encodes a batch on all cores (the Rust tokenizer is multi-threaded); workers
    help when reading and Python-side packing are the bottleneck. A slow tokenizer stays in-process.
    """
    bos, eos = (tok.bos_token_id if add_bos else None), tok.eos_token_id
    fast = getattr(tok, "is_fast", False)
    if num_proc <= 1 or not fast:
        local = tok.backend_tokenizer if fast else tok
        for batch in _batches(texts, _BATCH_DOCS):
            yield _encode(local, batch, bos, eos)
        return
    # spawn, not fork: fork would copy the Rust thread pool and any lock held at that moment
    ctx = multiprocessing.get_context("spawn")
    init = (tok.backend_tokenizer.to_str(), bos, eos)  # the exact tokenizer in use, rebuilt cheaply
    with ctx.Pool(num_proc, initializer=_worker_init, initargs=init) as pool:
        yield from pool.imap(_worker_encode, _batches(texts, _BATCH_DOCS), chunksize=1)


class _Packer:
    """Concatenates token lists and cuts exactly-full blocks; what is left over is the tail."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.carry = np.zeros(0, dtype=np.int32)
        self.documents = 0
        self.tokens = 0
        self.blocks = 0

    def add(self, docs: list[list[int]]) -> np.ndarray:
        """Add documents; return the blocks they complete as a ``[k, block_size]`` array."""
        if not docs:
            return np.zeros((0, self.block_size), dtype=np.int32)
        flat = np.fromiter((t for d in docs for t in d), dtype=np.int32)
        self.documents += len(docs)
        self.tokens += len(flat)
        flat = np.concatenate([self.carry, flat])
        k = len(flat) // self.block_size
        cut = k * self.block_size
        self.carry = flat[cut:]
        self.blocks += k
        return flat[:cut].reshape(k, self.block_size)

    @property
    def dropped(self) -> int:
        return len(self.carry)


def _split_encoded(
    plan: _Plan, tok: Any, num_proc: int, only: str | None = None
) -> Iterator[tuple[list[list[int]], list[list[int]]]]:
    """(train docs, eval docs) per batch, encoded, in input order. ``only`` encodes one side only."""
    texts: Iterable[str] = iter_texts(plan.files, plan.text_key)
    if only is not None:
        want_eval = only == "eval"
        texts = (t for i, t in enumerate(texts) if (i in plan.eval_idx) == want_eval)
        for docs in _encoded_batches(texts, tok, plan.add_bos, num_proc):
            yield ([], docs) if want_eval else (docs, [])
        return
    index = 0
    for docs in _encoded_batches(texts, tok, plan.add_bos, num_proc):
        train, held = [], []
        for doc in docs:
            (held if index in plan.eval_idx else train).append(doc)
            index += 1
        yield train, held


# --------------------------------------------------------------------------- streaming


def _stream_blocks(plan: _Plan) -> Iterator[dict[str, list[int]]]:
    """Generator behind the streaming train split: the same blocks, in the same order, as the cache.

    Takes one picklable argument (not lists, which datasets would shard and so reorder).
    """
    tok = load_tokenizer(plan.tokenizer_dir)
    packer = _Packer(plan.block_size)
    for train, _ in _split_encoded(plan, tok, 1, only="train"):
        for row in packer.add(train):
            yield {"input_ids": row.tolist()}


# --------------------------------------------------------------------------- cache files


def _write_arrow(path: Path, blocks: Iterator[np.ndarray], block_size: int) -> None:
    """Write ``[k, block_size]`` arrays as one Arrow stream file, the format `Dataset.from_file` maps."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, _SCHEMA) as writer:
        for arr in blocks:
            if len(arr) == 0:
                continue
            offsets = pa.array(np.arange(0, arr.size + 1, block_size, dtype=np.int32))
            column = pa.ListArray.from_arrays(offsets, pa.array(arr.reshape(-1)))
            writer.write_batch(pa.record_batch([column], schema=_SCHEMA))
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _buffered(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Regroup block arrays into record batches of about `_WRITE_BLOCKS` rows."""
    pending: list[np.ndarray] = []
    count = 0
    for arr in blocks:
        if len(arr):
            pending.append(arr)
            count += len(arr)
        if count >= _WRITE_BLOCKS:
            yield np.concatenate(pending)
            pending, count = [], 0
    if pending:
        yield np.concatenate(pending)


def _load_cached(
    entry: Path, key: str
) -> tuple[datasets.Dataset, datasets.Dataset | None, dict[str, Any]] | None:
    """The cached splits and stats of `entry`, or None when it is absent or not a complete entry for `key`."""
    import datasets

    try:
        meta = json.loads((entry / _META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or meta.get("format") != FORMAT_VERSION:
        return None
    try:
        train = datasets.Dataset.from_file(str(entry / _TRAIN))
        held = datasets.Dataset.from_file(str(entry / _EVAL)) if meta["stats"]["blocks_eval"] else None
    except (OSError, pa.ArrowException, KeyError):
        return None
    return train, held, meta["stats"]


def _remove_stale_temps(root: Path, key: str) -> None:
    """Delete temp dirs of this key left by killed runs on this host (their process no longer exists)."""
    host = socket.gethostname()
    for tmp in root.glob(f".tmp-{key}-*"):
        parts = tmp.name.split("-")
        try:
            tmp_host, pid = "-".join(parts[2:-2]), int(parts[-2])
        except (IndexError, ValueError):
            continue
        if tmp_host != host:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass


# --------------------------------------------------------------------------- weighted mixtures


def mixture_schedule(blocks: Sequence[int], weights: Sequence[float]) -> np.ndarray:
    """The source of every drawn training block, in order: source s gets round(N * p_s) draws, where p are the
    normalised weights and N = max_s blocks[s] / p_s (so the most demanding source is drawn exactly once per
    block and the others repeat); draws are spread evenly (source s's j-th draw at (j + 0.5) / count_s)."""
    p = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    total = max(n / q for n, q in zip(blocks, p))
    counts = [max(n, int(round(total * q))) for n, q in zip(blocks, p)]
    positions = np.concatenate([(np.arange(c) + 0.5) / c for c in counts])
    sources = np.repeat(np.arange(len(counts)), counts)
    return sources[np.argsort(positions, kind="stable")]


def _check_weights(data_files: Sequence[str], weights: Sequence[float]) -> list[float]:
    if len(weights) != len(data_files):
        raise DataError(
            f"{len(weights)} weights for {len(data_files)} data_files; give one weight per data_files entry."
        )
    bad = [w for w in weights if not (isinstance(w, (int, float)) and np.isfinite(w) and w > 0)]
    if bad:
        raise DataError(f"data_files weights must be positive numbers, got {bad[0]!r}.")
    return [float(w) for w in weights]


def _source_plans(plan: _Plan, sources: Sequence[Sequence[str]], docs: Sequence[int]) -> list[_Plan]:
    """One plan per mixture source, with the held-out document indices shifted into its own numbering."""
    plans, offset = [], 0
    for files, n in zip(sources, docs):
        held = frozenset(i - offset for i in plan.eval_idx if offset <= i < offset + n)
        plans.append(replace(plan, files=list(files), eval_idx=held))
        offset += n
    return plans


def _drawn(paths: Sequence[Path], schedule: np.ndarray, blocks: Sequence[int]) -> Iterator[np.ndarray]:
    """The scheduled blocks, `_WRITE_BLOCKS` at a time; source s's j-th draw is its block j mod blocks[s]."""
    import datasets

    sets = [datasets.Dataset.from_file(str(p)).with_format("numpy") for p in paths]
    taken = np.zeros(len(paths), dtype=np.int64)
    for lo in range(0, len(schedule), _WRITE_BLOCKS):
        chunk = schedule[lo : lo + _WRITE_BLOCKS]
        parts: dict[int, np.ndarray] = {}
        for s in np.unique(chunk):
            k = int((chunk == s).sum())
            idx = (taken[s] + np.arange(k)) % blocks[s]
            parts[int(s)] = np.asarray(sets[s][idx.tolist()]["input_ids"], dtype=np.int32)
            taken[s] += k
        rows = np.empty((len(chunk), parts[int(chunk[0])].shape[1]), dtype=np.int32)
        for s, block_rows in parts.items():
            rows[chunk == s] = block_rows
        yield rows


def _write_mixture(
    tmp: Path,
    plan: _Plan,
    tok: Any,
    num_proc: int,
    plans: list[_Plan],
    weights: list[float],
    names: list[str],
) -> dict[str, Any]:
    """Pack every source on its own, then write the training blocks in `mixture_schedule` order."""
    eval_packer = _Packer(plan.block_size)
    eval_rows: list[np.ndarray] = []
    packers, paths = [], []
    for s, sub in enumerate(plans):
        packer = _Packer(plan.block_size)

        def blocks(sub: _Plan = sub, packer: _Packer = packer) -> Iterator[np.ndarray]:
            for train, held in _split_encoded(sub, tok, num_proc):
                eval_rows.append(eval_packer.add(held))
                yield packer.add(train)

        paths.append(tmp / f"source-{s}.arrow")
        _write_arrow(paths[-1], _buffered(blocks()), plan.block_size)
        if packer.blocks == 0:
            raise DataError(
                f"{names[s]} (weight {weights[s]}) gives {packer.tokens} training tokens, fewer than one block of "
                f"{plan.block_size}; add text to it, lower block_size or drop it from data_files."
            )
        packers.append(packer)
    counts = [p.blocks for p in packers]
    schedule = mixture_schedule(counts, weights)
    _write_arrow(tmp / _TRAIN, _drawn(paths, schedule, counts), plan.block_size)
    _write_arrow(tmp / _EVAL, iter(eval_rows), plan.block_size)
    for path in paths:
        path.unlink()
    total = _Packer(plan.block_size)
    for attr in ("documents", "tokens"):
        setattr(total, attr, sum(getattr(p, attr) for p in packers))
    total.blocks = len(schedule)
    stats = _split_stats(total, eval_packer) | {"dropped_tail_tokens_train": sum(p.dropped for p in packers)}
    drawn = np.bincount(schedule, minlength=len(packers))
    stats["mixture"] = [
        {"source": names[s], "weight": weights[s], "share": round(float(drawn[s]) / len(schedule), 6),
         "blocks": counts[s], "drawn_blocks": int(drawn[s]), "epochs": round(float(drawn[s]) / counts[s], 4),
         "documents": packers[s].documents, "tokens": packers[s].tokens}
        for s in range(len(packers))
    ]  # fmt: skip
    return stats


# --------------------------------------------------------------------------- entry point


def build_packed_data(
    data_files: list[str],
    tokenizer_dir: str,
    block_size: int,
    cache_dir: str | None = None,
    eval_fraction: float = 0.01,
    eval_max_docs: int | None = 1000,
    seed: int = 42,
    streaming: bool = False,
    text_key: str = "text",
    add_bos: bool = True,
    num_proc: int = 1,
    weights: Sequence[float] | None = None,
) -> PackedData:
    """Tokenise, split by document, and pack `data_files` into blocks of `block_size` (see module doc).

    Cached mode returns memory-mapped `datasets.Dataset` splits, loaded from the cache when one with
    the same key exists. Streaming mode returns a `datasets.IterableDataset` train split (no cache)
    and an in-memory eval split; it reads the inputs once to count documents and once for the
    held-out ones, then once per pass over the training data.
    """
    t0 = time.perf_counter()
    if block_size < 2:
        raise DataError(
            f"block_size must be at least 2 (got {block_size}); use the model's context length, e.g. 2048."
        )
    if not 0 <= eval_fraction < 1:
        raise DataError(
            f"eval_fraction must be in [0, 1) (got {eval_fraction}); 0.01 holds out 1% of documents."
        )
    if eval_max_docs is not None and eval_max_docs < 0:
        raise DataError(f"eval_max_docs must be >= 0 or None (got {eval_max_docs}).")
    if isinstance(data_files, (str, os.PathLike)):
        data_files = [os.fspath(data_files)]
    if not data_files:
        raise NoDocumentsError(
            "no data files given; pass corpus files, directories or globs (e.g. build/corpus)."
        )
    if weights is not None:
        weights = _check_weights(data_files, weights)
        if streaming:
            raise DataError("weighted data_files need the cached mode; set streaming: false.")
    try:
        sources = [expand_inputs([f]) for f in data_files] if weights is not None else None
        files = [f for src in sources for f in src] if sources is not None else expand_inputs(data_files)
    except InputError as exc:
        raise DataError(f"cannot read the training data: {exc}") from exc
    tok_dir = str(Path(tokenizer_dir).expanduser().resolve())
    tok = load_tokenizer(tok_dir)
    tok_hash = tokenizer_sha256(tok_dir)
    key, key_contents = cache_key(
        files,
        tok_hash,
        block_size,
        eval_fraction=eval_fraction,
        eval_max_docs=eval_max_docs,
        seed=seed,
        add_bos=add_bos,
        text_key=text_key,
        weights=weights,
    )
    stats: dict[str, Any] = {
        "files": len(files),
        "inputs": [show_path(p) for p in data_files],
        "tokenizer_sha256": tok_hash,
        "cache_key": key,
        "block_size": block_size,
        "bos": tok.bos_token_id if add_bos else None,
        "eos": tok.eos_token_id,
    }
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    entry = root / key
    if not streaming and (cached := _load_cached(entry, key)) is not None:
        train, held, stats = cached
        stats = {**stats, "cache_hit": True, "seconds": round(time.perf_counter() - t0, 3)}
        log.info("packed data: cache hit %s (%d train blocks)", entry, stats["blocks_train"])
        return PackedData(train=train, eval=held, cache_dir=entry, stats=stats)

    text_stats = TextStats()
    groups = sources if sources is not None else [files]
    docs_per_source = [sum(1 for _ in iter_texts(g, text_key, stats=text_stats)) for g in groups]
    n_docs = sum(docs_per_source)
    if n_docs == 0:
        shown = ", ".join(show_path(f) for f in files[:5]) + (
            f", … ({len(files)} files)" if len(files) > 5 else ""
        )
        raise NoDocumentsError(
            f"no non-empty documents under the {text_key!r} field in {shown} ({text_stats.empty} empty, "
            f"{text_stats.unreadable} unreadable); check the paths and the text key (--text-key)."
        )
    eval_idx = _eval_indices(n_docs, eval_fraction, eval_max_docs, seed)
    stats |= {
        "documents": n_docs,
        "empty_documents": text_stats.empty,
        "unreadable": dict(text_stats.issues),
        "eval_fraction_actual": round(len(eval_idx) / n_docs, 6),
    }
    plan = _Plan(files, tok_dir, block_size, text_key, add_bos, frozenset(eval_idx))

    if streaming:
        return _build_streaming(plan, tok, stats, t0)

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root, key)
    tmp = root / f".tmp-{key}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        if weights is not None and sources is not None:
            plans = _source_plans(plan, sources, docs_per_source)
            names = [show_path(f) for f in data_files]
            stats |= _write_mixture(tmp, plan, tok, num_proc, plans, weights, names)
        else:
            stats |= _write_splits(tmp, plan, tok, num_proc)
        meta = {"format": FORMAT_VERSION, "key": key, "key_contents": key_contents, "stats": stats}
        (tmp / _META).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        _fsync(tmp / _META)
        if entry.exists() and _load_cached(entry, key) is None:
            shutil.rmtree(entry)  # not a complete entry (written by hand or by an older version)
        try:
            os.rename(tmp, entry)  # atomic: the entry appears complete or not at all
        except OSError:
            if _load_cached(entry, key) is None:
                raise
            log.info("packed data: another process wrote %s first; using it", entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    loaded = _load_cached(entry, key)
    if loaded is None:
        raise DataError(f"the packed-data cache {entry} could not be read back; delete it and rerun.")
    train, held, stats = loaded
    stats = {**stats, "cache_hit": False, "seconds": round(time.perf_counter() - t0, 3)}
    log.info(
        "packed data: wrote %s (%d train, %d eval blocks)", entry, stats["blocks_train"], stats["blocks_eval"]
    )
    return PackedData(train=train, eval=held, cache_dir=entry, stats=stats)


def _write_splits(tmp: Path, plan: _Plan, tok: Any, num_proc: int) -> dict[str, Any]:
    """Tokenise and pack both splits into Arrow files in `tmp`; return their counts."""
    train_packer, eval_packer = _Packer(plan.block_size), _Packer(plan.block_size)
    eval_rows: list[np.ndarray] = []

    def train_blocks() -> Iterator[np.ndarray]:
        for train, held in _split_encoded(plan, tok, num_proc):
            eval_rows.append(eval_packer.add(held))
            yield train_packer.add(train)

    _write_arrow(tmp / _TRAIN, _buffered(train_blocks()), plan.block_size)
    _write_arrow(tmp / _EVAL, iter(eval_rows), plan.block_size)
    _check_blocks(plan, train_packer, eval_packer)
    return _split_stats(train_packer, eval_packer)


def _check_blocks(plan: _Plan, train: _Packer, held: _Packer) -> None:
    if plan.eval_idx and held.blocks == 0:
        log.warning(
            "the %d held-out documents give %d tokens, fewer than one block of %d: no evaluation split. "
            "Raise eval_fraction / eval_max_docs or lower block_size.",
            len(plan.eval_idx),
            held.tokens,
            plan.block_size,
        )
    if train.blocks == 0 and train.documents:
        raise DataError(
            f"the training documents give {train.tokens} tokens, fewer than one block of {plan.block_size}; "
            "add data or lower block_size."
        )


def _split_stats(train: _Packer, held: _Packer) -> dict[str, Any]:
    return {
        "documents_train": train.documents,
        "documents_eval": held.documents,
        "tokens_train": train.tokens,
        "tokens_eval": held.tokens,
        "blocks_train": train.blocks,
        "blocks_eval": held.blocks,
        "dropped_tail_tokens_train": train.dropped,
        "dropped_tail_tokens_eval": held.dropped,
    }


def _build_streaming(plan: _Plan, tok: Any, stats: dict[str, Any], t0: float) -> PackedData:
    """Streaming mode: pack the held-out documents now, stream the training blocks on iteration."""
    import datasets

    eval_packer = _Packer(plan.block_size)
    rows = (
        [eval_packer.add(held) for _, held in _split_encoded(plan, tok, 1, only="eval")]
        if plan.eval_idx
        else []
    )
    held_ds = None
    if eval_packer.blocks:
        held_ds = datasets.Dataset.from_dict(
            {"input_ids": np.concatenate(rows).tolist()}, features=_features()
        )
    train = datasets.IterableDataset.from_generator(
        _stream_blocks, features=_features(), gen_kwargs={"plan": plan}
    )
    stats |= _split_stats(_Packer(plan.block_size), eval_packer) | {
        "documents_train": stats["documents"] - len(plan.eval_idx),
        "tokens_train": None,  # known only after a pass over the stream
        "blocks_train": None,
        "dropped_tail_tokens_train": None,
        "streaming": True,
        "cache_hit": False,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return PackedData(train=train, eval=held_ds, cache_dir=None, stats=stats)
