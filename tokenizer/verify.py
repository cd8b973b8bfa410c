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
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from zhtw.tokenizer.charclass import has_zh
from zhtw.tokenizer.errors import VerificationError
from zhtw.tokenizer.hf import llama_class_compatible
from zhtw.tokenizer.spmodel import NORMAL, BaseTokenizer, ModelProto, load_base, load_proto
from zhtw.tokenizer.textfiles import read_texts

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


def _expected_roundtrip(text: str, sp: spm.SentencePieceProcessor, add_dummy_prefix: bool) -> str:
    """`text` after the base's own normalizer (identity for Llama-2), as decode should give it back."""
    norm = sp.normalize(text).replace("▁", " ")
    return norm[1:] if add_dummy_prefix and norm.startswith(" ") and text else norm


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
        expect = _expected_roundtrip(text, sp_base, dummy)
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


def resolve_base(directory: Path, metadata: dict[str, Any] | None, base: str | BaseTokenizer | None) -> BaseTokenizer:
    """The base to compare with: given, or the one recorded in the metadata (checked by hash)."""
    if isinstance(base, BaseTokenizer):
        return base
    if base is None:
        if metadata is None:
            raise VerificationError("metadata", f"{directory} has no zhtw_tokenizer.json; pass --base to name the base tokenizer")
        base = metadata["base"]["source"]
    loaded = load_base(base)
    if metadata is not None and loaded.sha256 != metadata["base"]["sha256"]:
        raise VerificationError(
            "metadata", f"base {base} has sha256 {loaded.sha256[:12]}…, the build used {metadata['base']['sha256'][:12]}…; "
            "pass --base with the tokenizer the build used"
        )
    return loaded


def verify_dir(
    directory: str | Path,
    texts: Sequence[str] | None = None,
    *,
    base: str | BaseTokenizer | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check every invariant of `directory`; return counts, or raise `VerificationError`."""
    from zhtw.tokenizer.build import read_metadata

    directory = Path(directory)
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if not (directory / name).is_file():
            raise VerificationError("files", f"{directory / name} is missing; rebuild with zhtw-tok build")
    metadata = metadata if metadata is not None else read_metadata(directory)
    base_tok = resolve_base(directory, metadata, base)
    proto = load_proto(directory / "tokenizer.model")
    check_structure(proto, base_tok.proto, metadata["vocab_size"] if metadata else None)
    hf = _load_hf(directory)
    check_hf_files(directory, proto, base_tok, hf[1], hf[2])
    counts = check_texts(directory, proto, base_tok, default_texts() if texts is None else texts, hf)
    return {
        **counts,
        "vocab_size": len(proto.pieces),
        "added": len(proto.pieces) - base_tok.size,
        "llama_tokenizer_checked": llama_class_compatible(proto),
        "invariants": [
            "no_duplicates", "base_ids", "special_tokens", "new_scores", "buildable", "vocab_size",
            "ids_agree", "roundtrip", "english_unchanged",
        ],
    }


def verify_paths(directory: str | Path, text_paths: Sequence[str], base: str | None = None) -> dict[str, Any]:
    """CLI helper: default texts plus every document of `text_paths`."""
    texts = default_texts()
    for path in text_paths:
        texts.extend(read_texts(path))
    return verify_dir(directory, texts, base=base)


__all__ = ["check_structure", "default_texts", "verify_dir", "verify_paths"]
