"""`zhtw-pretrain prepare`: resize a base Llama-family model to the extended tokenizer and initialise the new rows.

Why a separate stage: training should start from a saved, resized base (otherwise every adapter checkpoint also
stores the full embedding matrices), and the new rows should start where they do the least harm. The methods
live in `zhtw.pretrain.init_methods` (`--init`): the default `distill` gives a new piece's output row the base's
probability of its sub-token sequence and distils its input row from that sequence; `mean-subtoken` (the mean
of the sub-tokens' base rows) takes a quarter of English's probability mass on a base that knows Chinese.

Reads top to bottom: check the tokenizer against the model, exit early when the output already matches the
inputs, load, resize and initialise, save the model and the tokenizer files, and write `zhtw_prepare.json` last
(an interrupted run therefore never looks finished).

Usage::

    zhtw-pretrain prepare --base ../shared/data/models/stories260K --tokenizer build/tokenizer \\
        --output build/prepared
    from zhtw.pretrain.prepare import prepare_model, load_prepare_metadata
"""

from __future__ import annotations

import argparse
import errno
import fnmatch
import hashlib
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, ClassVar

from zhtw.common.cli import ArgumentParser, add_common_options, parse_dtype, run_main
from zhtw.common.errors import OutputError, ZhtwError
from zhtw.common.fsutil import (
    LOCK_NAME,
    OWNER_MARKER,
    check_disjoint,
    clear_owned_output,
    files_intact,
    output_lock,
    sha256_file,
    show_path,
)
from zhtw.common.meta import ArtifactMeta, MetadataError, typed
from zhtw.pretrain.init_methods import DEFAULT_INIT, INIT_METHODS, INITS, InitError, initialise_new_rows
from zhtw.tokenizer.meta import TokenizerMeta

__all__ = [
    "ADAPTER_RECORD",
    "DTYPES",
    "FORMAT",
    "INITS",
    "METADATA",
    "TOKENIZER_FILES",
    "ExtendedTokenizer",
    "NotPreparedError",
    "OutputExistsError",
    "PrepareError",
    "TokenizerMismatchError",
    "base_subtoken_ids",
    "check_replaceable",
    "check_tokenizer_matches_model",
    "clear_output",
    "output_entries",
    "os_error_message",
    "prepared_identity",
    "initialise_new_rows",
    "load_extended_tokenizer",
    "load_prepare_metadata",
    "main",
    "prepare_model",
    "rows_for",
]

Log = Callable[[str], None]

FORMAT = "zhtw-prepare/1"
METADATA = "zhtw_prepare.json"
TOKENIZER_METADATA = "zhtw_tokenizer.json"
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    TOKENIZER_METADATA,
)
# files of the base directory that determine the prepared model (weights, config, tokenizer)
_BASE_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model*.bin.index.json",
    "tokenizer.model",
    "tokenizer.json",
)
# what save_pretrained writes for a causal LM; removed before an --overwrite so stale shards cannot linger
_MODEL_OUTPUT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
)
# names an older prepare (before the ownership marker) wrote: such a directory may be replaced by --overwrite
_LEGACY_OUTPUT = (*_MODEL_OUTPUT_PATTERNS, *TOKENIZER_FILES, "zhtw_prepare.json", ".zhtw_prepare.json.*")
COMMAND = "zhtw-pretrain prepare"
# written by `zhtw-pretrain train` into every adapter and checkpoint directory: which prepared model it trained on
ADAPTER_RECORD = "zhtw_adapter.json"
RANDOM_SEED = 0


class PrepareError(ZhtwError):
    """Base class: anything `zhtw-pretrain prepare` refuses or cannot do, with the fix in the message."""


class TokenizerMismatchError(PrepareError):
    """The extended tokenizer was not built on this model's tokenizer."""


class OutputExistsError(PrepareError):
    """The output directory holds something else; refusing to overwrite it silently."""


class NotPreparedError(PrepareError):
    """A directory is not (or not completely) a `zhtw-pretrain prepare` output."""


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("zhtw", "torch", "transformers", "safetensors", "sentencepiece", "tokenizers"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def rows_for(tokenizer_size: int, pad_to_multiple_of: int) -> int:
    """Embedding rows: the tokenizer length rounded up to the multiple (1 or 0: no padding)."""
    m = max(1, pad_to_multiple_of)
    return math.ceil(tokenizer_size / m) * m


# --------------------------------------------------------------------------------------------------------------
# output directories (shared by prepare, train and export)


def output_entries(out: Path) -> list[Path]:
    """What `out` holds besides zhtw's ownership marker and lock; `OutputError` when it is not a directory."""
    if not out.exists():
        return []
    if not out.is_dir():
        raise OutputError(f"{show_path(out)} exists and is not a directory; choose another output path.")
    return sorted(e for e in out.iterdir() if e.name not in (OWNER_MARKER, LOCK_NAME))


def check_replaceable(out: Path, *, command: str, legacy: Sequence[str]) -> None:
    """Refuse --overwrite of a directory that no zhtw command wrote.

    A directory carrying the ownership marker is ours. One without it is accepted only when it holds
    nothing but what `command` writes (`legacy` name patterns: outputs of a zhtw from before the marker).
    """
    if (out / OWNER_MARKER).is_file():
        return
    strangers = [e.name for e in output_entries(out) if not any(fnmatch.fnmatch(e.name, p) for p in legacy)]
    if strangers:
        shown = ", ".join(show_path(n) for n in strangers[:3]) + (" …" if len(strangers) > 3 else "")
        raise OutputError(
            f"{show_path(out)} was not created by {command} (no {OWNER_MARKER} marker) and holds {shown}; "
            "refusing to delete it even with --overwrite. Remove it yourself or choose another output directory."
        )


def clear_output(out: Path, *, command: str) -> None:
    """Empty an output directory that `check_replaceable` accepted (call it holding `output_lock`)."""
    clear_owned_output(out, command=command)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def os_error_message(exc: OSError, output: str | Path) -> str:
    """One line for an operating-system error met while a stage runs: the file, the reason, the fix."""
    where = show_path(exc.filename) if exc.filename else show_path(output)
    reason = exc.strerror or str(exc)
    if exc.errno in _DISK_FULL:
        fix = f"free space on the disk that holds {show_path(output)} (or choose another output directory), then rerun"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make it writable (or choose another output directory), then rerun"
    else:
        fix = "check the path, then rerun"
    return f"{where}: {reason}; {fix}."


def prepared_identity(meta: dict[str, Any]) -> str:
    """A prepared model's identity: SHA-256 over the digests of every file prepare wrote (weights, config,
    tokenizer). Two prepared models with the same shapes but other weights get different identities."""
    files = meta.get("files") or {}
    blob = json.dumps(files, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# the tokenizer and its base


def _load_proto(path: Path) -> Any:
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf's DecodeError is not exported consistently
        raise TokenizerMismatchError(f"{path} is not a SentencePiece model ({e}).") from e
    return proto


@dataclass
class ExtendedTokenizer:
    """A `zhtw-tok build` output directory: its backend, metadata, defining file's hash (and, for SentencePiece,
    its parsed model)."""

    directory: Path
    proto: Any  # sentencepiece ModelProto (None for other backends)
    meta: dict[str, Any]
    sha256: str
    backend: Any = None  # zhtw.tokenizer.backends.TokenizerBackend

    @property
    def size(self) -> int:
        return len(self.proto.pieces) if self.proto is not None else int(self.meta["vocab_size"])

    @property
    def base_vocab_size(self) -> int:
        return int(self.meta["base_vocab_size"])

    @property
    def added_pieces(self) -> list[str]:
        if self.proto is None:
            return self.backend.tokens(self.directory)[self.base_vocab_size :]
        return [p.piece for p in self.proto.pieces[self.base_vocab_size :]]

    @property
    def files(self) -> list[str]:
        """The files that make up the tokenizer (as recorded at build time) and its metadata."""
        return sorted({*self.meta.get("files", {}), TOKENIZER_METADATA})

    def subtoken_ids(self) -> list[list[int]]:
        """Base ids of every added token, through the tokenizer's backend."""
        out = self.backend.new_token_subtokens(self.directory, self.meta)
        empty = [t for t, ids in zip(self.added_pieces, out) if not ids]
        if empty:
            raise TokenizerMismatchError(
                f"the base tokenizer encodes {empty[:3]} to no ids; these tokens cannot be initialised."
            )
        return out


def load_extended_tokenizer(directory: str | Path) -> ExtendedTokenizer:
    """Load and self-check a `zhtw-tok build` output; raise `TokenizerMismatchError` saying how to make one."""
    d = Path(directory).expanduser()
    from zhtw.tokenizer.backends import backend_for_dir

    backend = backend_for_dir(d)
    if backend.name != "sentencepiece":
        return _load_other_backend(d, backend)
    missing = [name for name in TOKENIZER_FILES if not (d / name).is_file()]
    if missing:
        raise TokenizerMismatchError(
            f"{d} is not a finished zhtw-tok build output (missing {', '.join(missing)}); build the extended "
            "tokenizer with `zhtw-tok build --base MODEL_DIR --corpus ... --output TOKENIZER_DIR` and pass that "
            "directory as --tokenizer."
        )
    meta = _tokenizer_metadata(d)
    changed = [n for n, digest in meta["files"].items() if not files_intact(d, {n: digest})]
    if changed:
        raise TokenizerMismatchError(
            f"{show_path(d)}: {', '.join(changed)} no longer match the SHA-256 recorded in {TOKENIZER_METADATA} "
            "(the files were edited or damaged after the build). Rebuild the tokenizer with "
            "`zhtw-tok build --base MODEL_DIR ... --overwrite`."
        )
    proto = _load_proto(d / "tokenizer.model")
    n_base = int(meta.get("base_vocab_size", -1))
    added = [p.piece for p in proto.pieces[n_base:]] if n_base >= 0 else None
    if len(proto.pieces) != meta.get("vocab_size") or added != meta.get("added_pieces"):
        raise TokenizerMismatchError(
            f"{d}: tokenizer.model ({len(proto.pieces):,} pieces) does not match {TOKENIZER_METADATA} "
            f"(vocab_size {meta.get('vocab_size')}, base_vocab_size {meta.get('base_vocab_size')}); the directory "
            "was edited after the build. Rebuild it with `zhtw-tok build --base MODEL_DIR ... --overwrite`."
        )
    return ExtendedTokenizer(
        directory=d.resolve(), proto=proto, meta=meta, sha256=sha256_file(d / "tokenizer.model"), backend=backend
    )


def _load_other_backend(d: Path, backend: Any) -> ExtendedTokenizer:
    """A non-SentencePiece build (byte-level BPE): metadata and recorded hashes checked, sizes agree."""
    meta = _tokenizer_metadata(d)
    missing = [name for name in meta["files"] if not (d / name).is_file()]
    changed = [n for n, digest in meta["files"].items() if n not in missing and not files_intact(d, {n: digest})]
    if missing or changed:
        raise TokenizerMismatchError(
            f"{show_path(d)}: {', '.join(missing + changed)} missing or no longer matching the SHA-256 recorded in "
            f"{TOKENIZER_METADATA}. Rebuild the tokenizer with `zhtw-tok build --base MODEL_DIR ... --overwrite`."
        )
    tokens = backend.tokens(d)
    if len(tokens) != int(meta["vocab_size"]):
        raise TokenizerMismatchError(
            f"{show_path(d)}: tokenizer.json has {len(tokens):,} ids but {TOKENIZER_METADATA} records "
            f"{meta['vocab_size']:,}; rebuild it with `zhtw-tok build ... --overwrite`."
        )
    return ExtendedTokenizer(
        directory=d.resolve(), proto=None, meta=meta, sha256=sha256_file(d / "tokenizer.json"), backend=backend
    )


def _tokenizer_metadata(d: Path) -> dict[str, Any]:
    """zhtw_tokenizer.json, with its per-file digests; `TokenizerMismatchError` with the fix otherwise."""
    path = d / TOKENIZER_METADATA
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizerMismatchError(
            f"{show_path(path)} cannot be read ({e}); rebuild the tokenizer with `zhtw-tok build ... --overwrite`."
        ) from e
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict) or not meta["files"]:
        raise TokenizerMismatchError(
            f"{show_path(path)} records no file digests, so the tokenizer files cannot be checked; rebuild it "
            "with `zhtw-tok build ... --overwrite`."
        )
    try:
        return TokenizerMeta.from_dict(meta, where=path).to_dict()  # typed keys checked, schema version known
    except MetadataError as e:
        raise TokenizerMismatchError(f"{e} Rebuild it with `zhtw-tok build ... --overwrite`.") from e


def _pieces_from_tokenizer_json(path: Path) -> dict[int, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = {int(i): p for p, i in (data.get("model", {}).get("vocab") or {}).items()}
    for tok in data.get("added_tokens", []):
        vocab.setdefault(int(tok["id"]), tok["content"])
    return vocab


def check_tokenizer_matches_model(base: str | Path, tok: ExtendedTokenizer) -> Any:
    """Refuse a tokenizer that was not built on the base model's tokenizer; return the base SentencePiece proto.

    Compares pieces (text, score and type of the first `base_vocab_size` pieces), not file names, and also the
    base SHA-256 recorded by `zhtw-tok build` when the model directory holds its tokenizer.model.
    """
    base_dir = Path(base).expanduser()
    n = tok.base_vocab_size
    fix = (
        f"Rebuild the tokenizer on this model's tokenizer: `zhtw-tok build --base {base_dir} --corpus ... "
        f"--output NEW_TOKENIZER_DIR`, then pass --tokenizer NEW_TOKENIZER_DIR."
    )
    head = f"the tokenizer {tok.directory} was not built on the tokenizer of {base_dir}"
    if tok.proto is None:
        _check_json_base(base_dir / "tokenizer.json", tok, head, fix)
        return None
    model_file = base_dir / "tokenizer.model"
    if model_file.is_file():
        base_proto = _load_proto(model_file)
        if len(base_proto.pieces) != n:
            raise TokenizerMismatchError(
                f"{head}: the model's tokenizer.model has {len(base_proto.pieces):,} pieces, the extended "
                f"tokenizer's base had {n:,}. {fix}"
            )
        for i, (a, b) in enumerate(zip(base_proto.pieces, tok.proto.pieces)):
            if (a.piece, a.score, a.type) != (b.piece, b.score, b.type):
                raise TokenizerMismatchError(
                    f"{head}: piece {i} is {a.piece!r} in the model's tokenizer.model but {b.piece!r} in the "
                    f"extended tokenizer. {fix}"
                )
        recorded = tok.meta.get("base", {}).get("sha256")
        actual = sha256_file(model_file)
        if recorded != actual:
            raise TokenizerMismatchError(
                f"{head}: the pieces agree, but {TOKENIZER_METADATA} records base sha256 {str(recorded)[:12]}… and "
                f"the model's tokenizer.model is {actual[:12]}… (normaliser or settings differ). {fix}"
            )
        return base_proto
    json_file = base_dir / "tokenizer.json"
    if json_file.is_file():
        vocab = _pieces_from_tokenizer_json(json_file)
        if len(vocab) != n:
            raise TokenizerMismatchError(
                f"{head}: the model's tokenizer.json has {len(vocab):,} tokens, the extended tokenizer's base had "
                f"{n:,}. {fix}"
            )
        for i in range(n):
            if vocab.get(i) != tok.proto.pieces[i].piece:
                raise TokenizerMismatchError(
                    f"{head}: token {i} is {vocab.get(i)!r} in the model's tokenizer.json but "
                    f"{tok.proto.pieces[i].piece!r} in the extended tokenizer. {fix}"
                )
        base_proto = type(tok.proto)()
        base_proto.CopyFrom(tok.proto)
        del base_proto.pieces[n:]
        return base_proto
    raise TokenizerMismatchError(
        f"{base_dir} holds no tokenizer.model or tokenizer.json, so the extended tokenizer cannot be checked "
        f"against it; copy the model's original tokenizer.model into {base_dir} and run again."
    )


def _check_json_base(json_file: Path, tok: ExtendedTokenizer, head: str, fix: str) -> None:
    """A byte-level build against the model's own tokenizer.json: same tokens at every base id, same merges."""
    if not json_file.is_file():
        raise TokenizerMismatchError(
            f"{json_file.parent} holds no tokenizer.json, so the extended tokenizer cannot be checked against "
            f"it; copy the model's original tokenizer.json into {json_file.parent} and run again."
        )
    n = tok.base_vocab_size
    theirs = _pieces_from_tokenizer_json(json_file)
    ours = tok.backend.tokens(tok.directory)
    differ = next((i for i in range(n) if theirs.get(i) != ours[i]), None)
    if len(theirs) != n or differ is not None:
        where = f"token {differ} is {theirs.get(differ)!r} there but {ours[differ]!r} here" if differ is not None \
            else f"it has {len(theirs):,} ids, the extended tokenizer's base had {n:,}"
        raise TokenizerMismatchError(f"{head}: {where}. {fix}")
    base_merges = json.loads(json_file.read_text(encoding="utf-8"))["model"]["merges"]
    extended = json.loads((tok.directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    if extended[: len(base_merges)] != base_merges:
        raise TokenizerMismatchError(f"{head}: the same tokens, but other merges. {fix}")


def base_subtoken_ids(base_proto: Any, pieces: Sequence[str]) -> list[list[int]]:
    """The base ids each piece splits into under the base tokenizer, exactly as the piece's text.

    The piece is encoded as written, with the base normaliser minus its dummy prefix and whitespace collapsing:
    a piece `中文` must not become `▁中文`, and `▁▁` must stay two word markers. A literal `▁` in the text is
    the word-start marker itself, so `▁the` maps to the base piece `▁the`.
    """
    import sentencepiece as spm

    proto = type(base_proto)()
    proto.CopyFrom(base_proto)
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    out = [list(sp.encode(p)) for p in pieces]
    empty = [p for p, ids in zip(pieces, out) if not ids]
    if empty:
        raise TokenizerMismatchError(
            f"the base tokenizer encodes {empty[:3]} to no ids; these pieces cannot be initialised."
        )
    return out


# --------------------------------------------------------------------------------------------------------------
# resizing and initialisation


# --------------------------------------------------------------------------------------------------------------
# the stage


def _base_files(base_dir: Path) -> dict[str, str]:
    names = sorted({p.name for pat in _BASE_FILE_PATTERNS for p in base_dir.glob(pat) if p.is_file()})
    return {name: sha256_file(base_dir / name) for name in names}


def _inputs(
    base_files: dict[str, str], tok: ExtendedTokenizer, init: str, pad: int, dtype: str
) -> dict[str, Any]:
    """What a rerun compares: base files, tokenizer files and settings (not paths: moved inputs are the same)."""
    return {
        "base_model_files_sha256": base_files,
        "tokenizer_files_sha256": {name: sha256_file(tok.directory / name) for name in tok.files},
        "init": init,
        "pad_to_multiple_of": pad,
        "dtype": dtype,
    }


def _finished(out: Path, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The metadata of `out` when it was prepared from exactly these inputs and is intact, else None."""
    try:
        meta = load_prepare_metadata(out)
    except NotPreparedError:
        return None
    if meta.get("inputs") != inputs or not files_intact(out, meta.get("files", {})):
        return None
    return meta


def _check_args(base_dir: Path, tok_dir: Path, out: Path, init: str, pad: int, dtype: str) -> None:
    if init not in INITS:
        raise PrepareError(f"--init {init!r} is unknown; choose one of {', '.join(INITS)}.")
    if dtype not in DTYPES:
        raise PrepareError(f"--dtype {dtype!r} is unknown; choose one of {', '.join(DTYPES)}.")
    if pad < 1:
        raise PrepareError(f"--pad-to-multiple-of must be 1 (no padding) or more, not {pad}.")
    if not (base_dir / "config.json").is_file():
        raise PrepareError(
            f"{base_dir} is not a Hugging Face model directory (no config.json); pass the directory that "
            "`AutoModelForCausalLM.from_pretrained` loads as --base."
        )
    check_disjoint(out, [base_dir, tok_dir])
    output_entries(out)  # an output path that is a file is refused before any work


def prepare_model(
    base: str | Path,
    tokenizer: str | Path,
    output: str | Path,
    init: str = DEFAULT_INIT,
    pad_to_multiple_of: int = 64,
    dtype: str = "auto",
    overwrite: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Write `output`: the base model resized to the extended tokenizer and initialised, its tokenizer, metadata.

    A rerun with the same inputs returns the existing metadata without work; an output prepared from other
    inputs is refused unless `overwrite`. Returns the metadata written to `zhtw_prepare.json`.
    """
    t_start = time.perf_counter()
    base_dir, tok_dir, out = Path(base).expanduser(), Path(tokenizer).expanduser(), Path(output).expanduser()
    _check_args(base_dir, tok_dir, out, init, pad_to_multiple_of, dtype)
    tok = load_extended_tokenizer(tok_dir)
    base_proto = check_tokenizer_matches_model(base_dir, tok)
    n_base, n_tok = tok.base_vocab_size, tok.size
    log(
        f"tokenizer {tok.directory}: {n_base:,} base + {n_tok - n_base:,} new pieces; pieces match the base model"
    )

    log(f"hashing the base model files in {base_dir} ...")
    base_files = _base_files(base_dir)
    inputs = _inputs(base_files, tok, init, pad_to_multiple_of, dtype)
    done = _finished(out, inputs)
    if done is not None:
        log(f"{out} is up to date (same base model, tokenizer and settings); nothing to do.")
        return done
    if output_entries(out):
        if not overwrite:
            raise OutputExistsError(
                f"{show_path(out)} is not empty and was not prepared from these inputs (base, tokenizer, --init, "
                "--pad-to-multiple-of, --dtype); choose another --output or pass --overwrite."
            )
        check_replaceable(out, command=COMMAND, legacy=_LEGACY_OUTPUT)
    with output_lock(out, command=COMMAND):
        clear_output(out, command=COMMAND)
        return _resize_and_save(
            base_dir, tok, base_proto, out, init, pad_to_multiple_of, dtype, inputs, log, t_start
        )


def _resize_and_save(
    base_dir: Path,
    tok: ExtendedTokenizer,
    base_proto: Any,
    out: Path,
    init: str,
    pad_to_multiple_of: int,
    dtype: str,
    inputs: dict[str, Any],
    log: Log,
    t_start: float,
) -> dict[str, Any]:
    """Load the base, resize and initialise it, save model and tokenizer, and write zhtw_prepare.json last."""
    n_base, n_tok = tok.base_vocab_size, tok.size
    rows = rows_for(n_tok, pad_to_multiple_of)
    base_files = inputs["base_model_files_sha256"]

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_dir)
    base_rows = int(getattr(config, "vocab_size", 0) or 0)
    if base_rows < n_base:
        raise TokenizerMismatchError(
            f"{base_dir} has {base_rows:,} embedding rows but its tokenizer has {n_base:,} pieces; it is not the "
            "model this tokenizer belongs to (was it already prepared?). Pass the original base model as --base."
        )
    subtokens = (
        (base_subtoken_ids(base_proto, tok.added_pieces) if tok.proto is not None else tok.subtoken_ids())
        if INIT_METHODS[init].needs_subtokens
        else [[]] * (n_tok - n_base)
    )
    log(f"loading {base_dir} ({base_rows:,} embedding rows) ...")
    load_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=load_dtype)
    model.eval()
    try:
        tied = initialise_new_rows(model, n_base, rows, subtokens, init)
    except InitError as e:
        raise PrepareError(str(e)) from e
    resolved_dtype = str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")
    pad_rows = [n_tok, rows] if rows > n_tok else None
    log(
        f"resized to {rows:,} rows (new pieces {n_base:,}..{n_tok - 1:,}"
        + (f", pad rows {n_tok:,}..{rows - 1:,}" if pad_rows else "")
        + f"), init {init}, {'tied' if tied else 'untied'} head, {resolved_dtype}"
    )

    log(f"saving to {out} ...")
    model.save_pretrained(out)
    for name in tok.files:
        shutil.copyfile(tok.directory / name, out / name)
    written = sorted(
        {p.name for pat in (*_MODEL_OUTPUT_PATTERNS, *tok.files) for p in out.glob(pat) if p.is_file()}
    )
    meta: dict[str, Any] = {
        "format": FORMAT,
        "base_model": str(base_dir.resolve()),
        "base_model_files_sha256": base_files,
        "tokenizer_dir": str(tok.directory),
        "tokenizer_sha256": tok.sha256,
        "base_vocab_size": n_base,
        "tokenizer_size": n_tok,
        "embedding_rows": rows,
        "new_token_ids": [n_base, n_tok],
        "pad_rows": pad_rows,
        "init": init,
        "tie_word_embeddings": tied,
        "dtype": resolved_dtype,
        "versions": library_versions(),
        "seconds": 0.0,
        "pad_to_multiple_of": pad_to_multiple_of,
        "inputs": inputs,
        "files": {name: sha256_file(out / name) for name in written},
    }
    meta["seconds"] = round(time.perf_counter() - t_start, 2)
    record = PrepareMeta.from_dict(meta, where=out / METADATA)
    record.write(out)
    log(f"wrote {out} in {meta['seconds']:.1f} s")
    return record.to_dict()


@dataclass
class PrepareMeta(ArtifactMeta):
    """`zhtw_prepare.json`: what training, evaluation and export need to know about a prepared model."""

    FILENAME: ClassVar[str] = METADATA
    FORMAT: ClassVar[str | None] = FORMAT
    MADE_BY: ClassVar[str] = "zhtw-pretrain prepare"

    base_model: str = typed(str)
    tokenizer_dir: str = typed(str)
    tokenizer_sha256: str = typed(str)
    base_vocab_size: int = typed(int)
    tokenizer_size: int = typed(int)
    embedding_rows: int = typed(int)
    new_token_ids: list[int] = typed(list)
    tie_word_embeddings: bool = typed(bool)
    init: str = typed(str, default="mean")
    dtype: str = typed(str, default="auto")
    files: dict[str, str] = typed(dict, default_factory=dict)


def read_prepare_meta(directory: str | Path) -> PrepareMeta:
    """The typed `zhtw_prepare.json` of a prepared model directory; `NotPreparedError` with the fix otherwise."""
    d = Path(directory).expanduser()
    return PrepareMeta.from_dict(load_prepare_metadata(d), where=d / METADATA)


def load_prepare_metadata(directory: str | Path) -> dict[str, Any]:
    """The `zhtw_prepare.json` of a prepared model directory; `NotPreparedError` with the fix otherwise."""
    d = Path(directory).expanduser()
    path = d / METADATA
    fix = (
        "Run `zhtw-pretrain prepare --base MODEL_DIR --tokenizer TOKENIZER_DIR --output "
        f"{d}` first (or pass the directory it wrote)."
    )
    if not path.is_file():
        raise NotPreparedError(f"{d} is not a prepared model: {METADATA} is missing. {fix}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NotPreparedError(f"{path} cannot be read ({e}). {fix}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise NotPreparedError(f"{path} has format {got!r}, expected {FORMAT!r}. {fix}")
    try:
        return PrepareMeta.from_dict(meta, where=path).to_dict()  # typed keys checked, schema_version added
    except MetadataError as e:
        raise NotPreparedError(f"{e} {fix}") from e


# --------------------------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="zhtw-pretrain prepare",
        description="Resize a base Llama-family model to a `zhtw-tok build` tokenizer, initialise the new "
        "embedding and output-head rows, and save model, tokenizer and zhtw_prepare.json. Rerunning on a "
        "finished output is a no-op.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--base", required=True, help="base model directory (Hugging Face format, with its tokenizer)"
    )
    p.add_argument(
        "--tokenizer", required=True, help="extended tokenizer directory written by `zhtw-tok build`"
    )
    p.add_argument("--output", required=True, help="output directory for the prepared model")
    p.add_argument(
        "--init",
        choices=INITS,
        default=DEFAULT_INIT,
        help="how the new rows start: " + "; ".join(f"'{m.name}': {m.help}" for m in INIT_METHODS.values()),
    )
    p.add_argument(
        "--pad-to-multiple-of",
        type=int,
        default=64,
        help="round the embedding rows up to this multiple (pad rows are initialised like the others); 1: none",
    )
    p.add_argument("--dtype", type=parse_dtype, default="auto",
                   help="float32, bfloat16 or float16 (fp32/bf16/fp16 accepted); 'auto' keeps the base model's dtype")
    p.add_argument("--overwrite", action="store_true", help="replace an output prepared from other inputs")
    add_common_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `zhtw-pretrain prepare`: 0 done, 1 refused (one line with the fix), 2 usage."""
    parser = _parser()
    return run_main(parser.prog, parser, _run, argv, describe_os_error=lambda e: os_error_message(e, "."))


def _run(args: argparse.Namespace) -> None:
    prepare_model(
        args.base,
        args.tokenizer,
        args.output,
        init=args.init,
        pad_to_multiple_of=args.pad_to_multiple_of,
        dtype=args.dtype,
        overwrite=args.overwrite,
        log=(lambda m: None) if args.quiet else print,
    )
    print(f"prepared model: {show_path(args.output)} (metadata {show_path(Path(args.output) / METADATA)})")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
