"""`zhtw-tok verify`: check every invariant of an extended tokenizer directory; fail with the offending example.

Invariants (issue 3, step 5), each raising `VerificationError` with its name:
- `no_duplicates`: every piece occurs once; tokenizer.json holds exactly the pieces of tokenizer.model, same ids.
- `base_ids`: ids 0..N-1 of the base map to the same pieces, types and scores.
- `special_tokens`: unk/bos/eos/pad ids and strings equal the base's, in sentencepiece and in Hugging Face.
- `new_scores`: new pieces score below every base piece, in strictly decreasing (learned) order.
- `buildable`: every added multi-character piece is one merge of two pieces of the vocabulary.
- `vocab_size`: the total equals the metadata's.
- `ids_agree`: sentencepiece = HF slow (SentencePieceBackend) = HF fast (AutoTokenizer) ids on every text,
  and LlamaTokenizer as promised in `zhtw.tokenizer.hf` (texts starting with a space: ids of the text without it).
- `roundtrip`: decode(encode(x)) == x (up to the base's own normalizer) with sentencepiece and HF fast.
- `english_unchanged`: every text without Chinese characters (English, code: the Python standard library's
  sources, the README) tokenises exactly as with the base.
- `ids_agree` also on every added piece: its text alone and runs of added pieces in context, so a merge
  missing from tokenizer.json is caught even when the texts hold little Chinese; `zhtw-tok verify` adds
  real Chinese documents from the corpus recorded in the metadata when it is still there.
- `merges`: tokenizer.json's merge list is exactly the one tokenizer.model implies (see `zhtw.tokenizer.hf`).
- `file_hashes`: every file recorded in zhtw_tokenizer.json has the SHA-256 recorded at build time.
"""

from __future__ import annotations

import json
import os
import re
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import sha256_file, show_path
from zhtw.corpus.readers import InputError
from zhtw.tokenizer.charclass import has_zh
from zhtw.tokenizer.errors import MetadataError, UnsupportedBaseError, VerificationError
from zhtw.tokenizer.hf import HF_FILES, bpe_merges, llama_class_compatible
from zhtw.tokenizer.meta import read_metadata
from zhtw.tokenizer.spmodel import (
    NORMAL,
    BaseTokenizer,
    ModelProto,
    expected_roundtrip,
    load_base,
    load_proto,
)
from zhtw.tokenizer.textfiles import read_texts

PIECE_RUN = 24  # added pieces joined per context text
CORPUS_DOCS = 300  # Chinese corpus documents `zhtw-tok verify` adds, at most
CORPUS_CHARS = 1_000_000
INVARIANTS = [
    "no_duplicates", "base_ids", "special_tokens", "new_scores", "buildable", "vocab_size",
    "ids_agree", "roundtrip", "english_unchanged", "merges", "file_hashes",
]

BUILTIN_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It's 3.14159, isn't it?",
    "  leading spaces",
    " one leading space",
    "a  b   c    d     e",
    "trailing spaces   ",
    "\tTab\n\nnew line\r\nwindows",
    "def f(x):\n    return x  # comment\n\n\nclass A:\n        pass\n",
    "x <s> y </s> <unk>",
    "emoji 🙂 and accents éàü and symbols ½ ∑ → ★",
    "中華民國（臺灣）的首都是臺北市。",
    "第 1 條　本細則依法務部組織法第二十條訂定之。",
    "「你好」，他說：『我們明天見！』……",
    "ㄅㄆㄇㄈ 注音符號",
    "混合 English 與中文 mixed text 123 與數字４５６",
    " 前導空白",
    "𠀀𪚥 rare ideographs",
    "",
    "     ",
]


def stdlib_texts(limit: int = 40) -> list[str]:
    """A deterministic sample of the Python standard library's own source files (real English + code)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    step = max(1, len(files) // limit)
    out = []
    for p in files[::step][:limit]:
        try:
            out.append(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return out


def default_texts() -> list[str]:
    """Built-in strings, stdlib sources and this project's README when present."""
    texts = list(BUILTIN_TEXTS) + stdlib_texts()
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if readme.is_file():
        texts.append(readme.read_text(encoding="utf-8"))
    return texts


def _first_diff(a: Sequence[int], b: Sequence[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _context(text: str, sp: spm.SentencePieceProcessor, a: list[int], b: list[int]) -> str:
    i = _first_diff(a, b)
    return f"first difference at token {i}: {sp.id_to_piece(a[i : i + 5])} vs {sp.id_to_piece(b[i : i + 5])}"


def check_structure(proto: ModelProto, base: ModelProto, expected_size: int | None = None) -> None:
    """Invariants that need no text: duplicates, base ids, special ids, scores, buildability, size."""
    seen: dict[str, int] = {}
    for i, p in enumerate(proto.pieces):
        if p.piece in seen:
            raise VerificationError("no_duplicates", f"piece occurs at ids {seen[p.piece]} and {i}", p.piece)
        seen[p.piece] = i
    n_base = len(base.pieces)
    if len(proto.pieces) < n_base:
        raise VerificationError("base_ids", f"{len(proto.pieces)} pieces, fewer than the base's {n_base}")
    for i, b in enumerate(base.pieces):
        p = proto.pieces[i]
        if (p.piece, p.type, p.score) != (b.piece, b.type, b.score):
            raise VerificationError(
                "base_ids", f"id {i} is {p.piece!r} (type {p.type}, score {p.score}) but the base has "
                f"{b.piece!r} (type {b.type}, score {b.score})", p.piece
            )
    for key in ("unk_id", "bos_id", "eos_id", "pad_id"):
        got, want = getattr(proto.trainer_spec, key), getattr(base.trainer_spec, key)
        if got != want:
            raise VerificationError("special_tokens", f"{key} is {got}, the base's is {want}")
    floor = min(p.score for p in base.pieces if p.type == NORMAL)
    prev = floor
    for i in range(n_base, len(proto.pieces)):
        p = proto.pieces[i]
        if p.type != NORMAL:
            raise VerificationError("new_scores", f"added id {i} has type {p.type}, not NORMAL", p.piece)
        if not p.score < prev:
            raise VerificationError(
                "new_scores", f"added id {i} has score {p.score}, not below {prev} (base minimum {floor})", p.piece
            )
        prev = p.score
    normal = {p.piece for p in proto.pieces if p.type == NORMAL}
    for i in range(n_base, len(proto.pieces)):
        s = proto.pieces[i].piece
        if len(s) > 1 and not any(s[:k] in normal and s[k:] in normal for k in range(1, len(s))):
            raise VerificationError("buildable", f"added id {i} cannot be built by merging two pieces", s)
    if expected_size is not None and len(proto.pieces) != expected_size:
        raise VerificationError("vocab_size", f"{len(proto.pieces)} pieces, metadata says {expected_size}")


def _load_hf(directory: Path) -> tuple[Any, Any, Any]:
    """HF slow (sentencepiece-backed), fast (AutoTokenizer) and LlamaTokenizer loads of the directory."""
    from transformers import AutoTokenizer, LlamaTokenizer
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    fast = AutoTokenizer.from_pretrained(str(directory))
    slow = SentencePieceBackend.from_pretrained(str(directory))
    llama = LlamaTokenizer.from_pretrained(str(directory))
    return slow, fast, llama


def check_hf_files(directory: Path, proto: ModelProto, base: BaseTokenizer, fast: Any, llama: Any) -> None:
    """tokenizer.json vocab = tokenizer.model pieces; special tokens and ids as in the base."""
    vocab = fast.backend_tokenizer.get_vocab(with_added_tokens=True)
    if len(vocab) != len(proto.pieces) or len(fast) != len(proto.pieces):
        raise VerificationError(
            "no_duplicates", f"tokenizer.json has {len(vocab)} tokens (len {len(fast)}), tokenizer.model {len(proto.pieces)}"
        )
    for i, p in enumerate(proto.pieces):
        if vocab.get(p.piece) != i:
            raise VerificationError("no_duplicates", f"tokenizer.json maps {p.piece!r} to {vocab.get(p.piece)}, not {i}", p.piece)
    ids = {p.piece: i for i, p in enumerate(base.proto.pieces)}
    for tok in (fast, llama):
        for attr in ("unk", "bos", "eos", "pad"):
            want = getattr(base.special, attr)
            got = getattr(tok, f"{attr}_token")
            got_id = getattr(tok, f"{attr}_token_id")
            want_id = ids.get(want) if want is not None else None
            if got != want or got_id != want_id:
                raise VerificationError(
                    "special_tokens",
                    f"{type(tok).__name__} {attr}_token is {got!r} (id {got_id}); the base's is {want!r} (id {want_id})",
                )
    probe = fast("x")["input_ids"]
    want_bos = [ids[base.special.bos]] if base.special.add_bos and base.special.bos else []
    if probe[: len(want_bos)] != want_bos:
        raise VerificationError("special_tokens", f"AutoTokenizer adds {probe} to 'x'; expected BOS {want_bos} first", "x")


def check_texts(
    directory: Path, proto: ModelProto, base: BaseTokenizer, texts: Iterable[str], hf: tuple[Any, Any, Any]
) -> dict[str, int]:
    """Per-text invariants: ids agree across implementations, roundtrip, English unchanged."""
    slow, fast, llama = hf
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    sp_base = spm.SentencePieceProcessor(model_proto=base.proto.SerializeToString())
    llama_ok = llama_class_compatible(proto)
    dummy = proto.normalizer_spec.add_dummy_prefix
    counts = {"texts": 0, "tokens": 0, "english_texts": 0, "llama_leading_space_texts": 0}
    for text in texts:
        counts["texts"] += 1
        ids = sp.encode(text)
        counts["tokens"] += len(ids)
        fast_ids = fast.encode(text, add_special_tokens=False, split_special_tokens=True)
        if fast_ids != ids:
            raise VerificationError("ids_agree", "AutoTokenizer ids differ from sentencepiece; " + _context(text, sp, ids, fast_ids), text)
        slow_ids = slow.encode(text, add_special_tokens=False, split_special_tokens=True)
        if slow_ids != ids:
            raise VerificationError("ids_agree", "HF slow ids differ from sentencepiece; " + _context(text, sp, ids, slow_ids), text)
        if llama_ok:
            lead = text.startswith(" ")
            want = sp.encode(text[1:]) if lead else ids
            counts["llama_leading_space_texts"] += int(lead)
            got = llama.encode(text, add_special_tokens=False, split_special_tokens=True)
            if got != want:
                raise VerificationError("ids_agree", "LlamaTokenizer ids differ from the promise; " + _context(text, sp, want, got), text)
        expect = expected_roundtrip(text, sp_base, dummy)
        for name, decoded in (("sentencepiece", sp.decode(ids)), ("AutoTokenizer", fast.decode(fast_ids))):
            if decoded != expect:
                raise VerificationError("roundtrip", f"{name} decode(encode(x)) gives {decoded[:200]!r}", text)
        if not has_zh(text):
            counts["english_texts"] += 1
            base_ids = sp_base.encode(text)
            if base_ids != ids:
                raise VerificationError(
                    "english_unchanged", "text without Chinese tokenises differently from the base; "
                    + _context(text, sp, base_ids, ids), text
                )
    return counts


def piece_texts(proto: ModelProto, n_base: int) -> list[str]:
    """Every added piece as text, then runs of consecutive added pieces joined (each piece in context)."""
    alone = [p.piece.replace("▁", " ") for p in proto.pieces[n_base:]]
    runs = ["".join(alone[i : i + PIECE_RUN]) for i in range(0, len(alone), PIECE_RUN)]
    return alone + runs


def check_new_pieces(proto: ModelProto, n_base: int, fast: Any) -> int:
    """sentencepiece = AutoTokenizer on the text of every added piece, alone and in context."""
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    texts = piece_texts(proto, n_base)
    step = 1024
    for i in range(0, len(texts), step):
        batch = texts[i : i + step]
        got = fast(batch, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        for text, want, ids in zip(batch, sp.encode(batch), got):
            if ids != want:
                raise VerificationError(
                    "ids_agree", "AutoTokenizer ids differ from sentencepiece on the text of added pieces; "
                    + _context(text, sp, want, ids), text
                )
    return len(texts)


def _merge_pair(m: Any) -> tuple[str, str]:
    if isinstance(m, str):
        a, _, b = m.partition(" ")
        return a, b
    return tuple(m)  # type: ignore[return-value]


def check_merges(directory: Path, proto: ModelProto) -> None:
    """tokenizer.json holds exactly the merges tokenizer.model implies, in sentencepiece's priority order."""
    data = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    got = [_merge_pair(m) for m in data.get("model", {}).get("merges", [])]
    want = bpe_merges(proto)
    if got == want:
        return
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    shown = lambda ms: repr(ms[i]) if i < len(ms) else "nothing"  # noqa: E731
    raise VerificationError(
        "merges",
        f"tokenizer.json has {len(got):,} merges, tokenizer.model implies {len(want):,}; merge {i:,} "
        f"is {shown(got)} where {shown(want)} is expected; rebuild with zhtw-tok build --overwrite",
        "".join(want[i]) if i < len(want) else None,
    )


def check_hashes(directory: Path, metadata: dict[str, Any] | None) -> int:
    """Every file recorded at build time still has its recorded SHA-256."""
    recorded = (metadata or {}).get("files") or {}
    if not isinstance(recorded, dict):
        raise MetadataError(f"{show_path(directory)}: the metadata's 'files' is not a mapping; rebuild.")
    for name, digest in recorded.items():
        path = directory / name
        if not path.is_file():
            raise VerificationError("file_hashes", f"{show_path(path)} is missing; rebuild it")
        got = sha256_file(path)
        if got != digest:
            raise VerificationError(
                "file_hashes",
                f"{show_path(path)} has SHA-256 {got[:12]}…, the build recorded {str(digest)[:12]}…; it "
                "was changed after the build: restore it or rebuild with zhtw-tok build --overwrite",
            )
    return len(recorded)


def _unshown(path: str) -> str:
    """The file-system name of a path recorded through `show_path` (names that are not UTF-8 come back)."""
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m[1], 16)]), path.encode("utf-8"))
    return os.fsdecode(raw)


def _recorded_base(metadata: dict[str, Any]) -> tuple[str, str]:
    """The base path (absolute one first, when it still exists) and hash recorded at build time."""
    try:
        recorded = metadata["base"]
        candidates = [recorded["model_path"], _unshown(recorded["model_path"]), recorded["source"]]
        path = next((p for p in candidates if Path(p).is_file()), recorded["source"])
        return str(path), str(recorded["sha256"])
    except (KeyError, TypeError) as e:
        raise MetadataError(
            f"zhtw_tokenizer.json has no usable 'base' record ({e}); pass --base or rebuild."
        ) from e


def resolve_base(directory: Path, metadata: dict[str, Any] | None, base: str | BaseTokenizer | None) -> BaseTokenizer:
    """The base to compare with: given, or the one recorded in the metadata (checked by hash)."""
    if isinstance(base, BaseTokenizer):
        return base
    if base is None:
        if metadata is None:
            raise VerificationError(
                "metadata",
                f"{show_path(directory)} has no zhtw_tokenizer.json; pass --base to name the base tokenizer",
            )
        base, want = _recorded_base(metadata)
        try:
            loaded = load_base(base)
        except UnsupportedBaseError as e:
            raise VerificationError(
                "metadata",
                f"the base recorded at build time cannot be loaded ({e}); pass --base with its new place",
            ) from e
    else:
        want = _recorded_base(metadata)[1] if metadata is not None else None
        loaded = load_base(base)
    if want is not None and loaded.sha256 != want:
        raise VerificationError(
            "metadata",
            f"base {show_path(base)} has sha256 {loaded.sha256[:12]}…, the build used {want[:12]}…; "
            "pass --base with the tokenizer the build used",
        )
    return loaded


def _load_model(directory: Path) -> ModelProto:
    """The directory's tokenizer.model; a damaged one is named, never a traceback."""
    try:
        return load_proto(directory / "tokenizer.model")
    except UnsupportedBaseError as e:
        raise VerificationError("files", f"{e}; rebuild with zhtw-tok build --overwrite") from e


def _load_hf_checked(directory: Path) -> tuple[Any, Any, Any]:
    """The Hugging Face loads of the directory; a file they cannot load is named, never a traceback."""
    for name in HF_FILES:
        if name.endswith(".json"):
            try:
                json.loads((directory / name).read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise VerificationError(
                    "files",
                    f"{show_path(directory / name)} is not valid JSON ({e}); rebuild with zhtw-tok build "
                    "--overwrite",
                ) from e
    try:
        return _load_hf(directory)
    except Exception as e:  # transformers/tokenizers raise many types on damaged files
        raise VerificationError(
            "files", f"Hugging Face cannot load {show_path(directory)} ({type(e).__name__}: {str(e)[:200]}); "
            "rebuild with zhtw-tok build --overwrite"
        ) from e


def _expected_size(metadata: dict[str, Any] | None) -> int | None:
    if metadata is None:
        return None
    size = metadata.get("vocab_size")
    if not isinstance(size, int):
        raise MetadataError(
            "zhtw_tokenizer.json has no integer 'vocab_size'; rebuild with zhtw-tok build --overwrite."
        )
    return size


def verify_dir(
    directory: str | Path,
    texts: Sequence[str] | None = None,
    *,
    base: str | BaseTokenizer | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check every invariant of `directory`; return counts, or raise `VerificationError`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VerificationError(
            "files", f"{show_path(directory)} is not a directory; give a zhtw-tok build output"
        )
    for name in HF_FILES:
        if not (directory / name).is_file():
            raise VerificationError(
                "files", f"{show_path(directory / name)} is missing; rebuild with zhtw-tok build"
            )
    metadata = metadata if metadata is not None else read_metadata(directory)
    base_tok = resolve_base(directory, metadata, base)
    proto = _load_model(directory)
    check_structure(proto, base_tok.proto, _expected_size(metadata))
    hf = _load_hf_checked(directory)
    check_hf_files(directory, proto, base_tok, hf[1], hf[2])
    counts = check_texts(directory, proto, base_tok, default_texts() if texts is None else texts, hf)
    counts["piece_texts"] = check_new_pieces(proto, base_tok.size, hf[1])
    check_merges(directory, proto)
    counts["files_hashed"] = check_hashes(directory, metadata)
    return {
        **counts,
        "vocab_size": len(proto.pieces),
        "added": len(proto.pieces) - base_tok.size,
        "llama_tokenizer_checked": llama_class_compatible(proto),
        "invariants": list(INVARIANTS),
    }


def corpus_sample(metadata: dict[str, Any] | None) -> list[str]:
    """Chinese documents from the corpus the build read, when its files are still there (spread over them)."""
    from zhtw.corpus.textio import iter_texts

    records = (metadata or {}).get("inputs", {}).get("corpus", [])
    shown = [str(r.get("path")) for r in records if isinstance(r, dict)]
    paths = [p for p in (_unshown(s) for s in shown) if os.path.isfile(p)]
    text_key = str((metadata or {}).get("settings", {}).get("text_key", "text"))
    out: list[str] = []
    chars = 0
    per_file = max(1, CORPUS_DOCS // max(1, len(paths)))
    for path in paths:
        taken = 0
        try:
            for text in iter_texts([path], text_key):
                if taken >= per_file or chars >= CORPUS_CHARS:
                    break
                if has_zh(text):
                    out.append(text)
                    taken += 1
                    chars += len(text)
        except (InputError, ZhtwError, OSError):
            continue  # best effort: a corpus file that moved or broke only means fewer extra texts
    return out


def verify_paths(directory: str | Path, text_paths: Sequence[str], base: str | None = None) -> dict[str, Any]:
    """CLI helper: default texts, every document of `text_paths`, Chinese documents of the recorded corpus."""
    texts = default_texts()
    for path in text_paths:
        try:
            texts.extend(read_texts(path))
        except UnicodeDecodeError as e:
            raise VerificationError(
                "files", f"--text {show_path(path)} is not UTF-8 text ({e.reason})"
            ) from e
    directory = Path(directory)
    extra = corpus_sample(read_metadata(directory)) if directory.is_dir() else []
    report = verify_dir(directory, texts + extra)
    report["corpus_texts"] = len(extra)
    return report


__all__ = ["check_structure", "default_texts", "verify_dir", "verify_paths"]
