"""Byte-level BPE bases (Llama-3, Qwen2): load, extend with Chinese merges, write, reference-encode, GGUF fields.

Why a module of its own: a byte-level BPE base ships as a Hugging Face ``tokenizer.json`` whose merge list, not
piece scores, decides the segmentation; its pre-tokenizer regex, its ``ignore_merges`` flag and its special tokens
must survive the extension bit for bit, or English and code stop tokenising like the base.

Public API (plain functions and frozen dataclasses):

- ``load_base(path) -> ByteLevelBase``: read and check a base (file or directory); refuses what it does not know
  with ``UnsupportedBaseError``.
- ``zhtw.tokenizer.bytelevel_train``: ``balanced_texts(files, total_chars, weights=None)`` (equal or weighted
  character share per source file) and ``learn_merges(base, texts, n_new, progress=None, max_token_chars=None,
  per_doc_cap=None, allow_fewer=False) -> list[(left, right)]`` (continued BPE training).
- ``extend(base, merges, pad_to_multiple_of=64) -> Extended``: the extended ``tokenizer.json`` dict and counts.
- ``write_hf(out_dir, extended, base_dir) -> list[str]``: ``tokenizer.json`` + ``tokenizer_config.json`` (+ the
  base's chat template / special-token files), written atomically.
- ``reference_encoder(tokenizer_json) -> ReferenceEncoder``: an independent tiktoken encoder of the same ranks.
- ``decompose(base, token) -> list[int]``: base ids of a new token's bytes (mean-subtoken initialisation).
- ``zhtw.tokenizer.bytelevel_gguf.gguf_vocab(tokenizer_dir_or_dict, vocab_size=None) -> GGUFVocab``: the
  ``tokenizer.ggml.*`` fields llama.cpp's converter would write.
- ``zhtw.tokenizer.bytelevel_verify.verify(out_dir, base, texts, english_texts) -> VerifyReport``.

The allowed-merge rule (``safe_new_token``): a new token's bytes must decode as one or more allowed characters,
optionally followed by the first bytes of one more character where EVERY character those bytes can begin is
allowed. Allowed characters: CJK ideographs (U+3400–4DBF, U+4E00–9FFF, U+F900–FAFF, U+20000–2FA1F,
U+30000–323AF), CJK symbols and punctuation U+3000–303F, Bopomofo U+3100–312F and U+31A0–31BF, full-width forms
U+FF00–FF64 and U+FFE0–FFEF (half-width katakana and hangul excluded). A token always starts on a lead byte, and
in valid UTF-8 a lead byte starts a character, so wherever a new merge fires in any text it joins bytes of allowed
characters only: a pre-token without them (English, code, digits, kana, hangul, emoji) tokenises as in the base.

Ids: new tokens follow merge order and come after every base id, special and added tokens included (Llama-3:
128256 on; Qwen2: after its highest added id). For each new token the merge list gets every split into two
earlier tokens (ordered by the parts' ids), as transformers' TikTokenConverter writes Llama-3's merges; that makes
the Hugging Face BPE equal to tiktoken's rank-by-token algorithm, which is the independent reference. The base's
added tokens are also written into the model vocabulary at their own ids (see `extend`), or tokenizers would
renumber them after the new tokens.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from zhtw.common.fsutil import atomic_write_bytes, atomic_write_json, sha256_file, show_path
from zhtw.tokenizer.errors import UnsupportedBaseError

__all__ = [
    "ALLOWED_CHAR_RE",
    "ALLOWED_RANGES",
    "ByteLevelBase",
    "Extended",
    "PRE_TOKENIZER_REGEX",
    "ReferenceEncoder",
    "BYTE_TO_UNICODE",
    "UNICODE_TO_BYTE",
    "decompose",
    "extend",
    "ids_follow_merge_order",
    "is_allowed_char",
    "load_base",
    "load_json",
    "normalize",
    "reference_encoder",
    "safe_new_token",
    "token_bytes",
    "write_hf",
]

PRE_TOKENIZER_REGEX = {
    "llama-bpe": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
    "qwen2": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}
_NORMALIZER = {"llama-bpe": None, "qwen2": {"type": "NFC"}}
_SUPPORTED = "Llama-3 (llama-bpe: no normaliser) or Qwen2 (qwen2: NFC) byte-level BPE tokenizer.json"

ALLOWED_RANGES: tuple[tuple[int, int], ...] = (
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3100, 0x312F),  # Bopomofo
    (0x31A0, 0x31BF),  # Bopomofo extended
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFF64),  # full-width ASCII variants and half-width CJK punctuation
    (0xFFE0, 0xFFEF),  # full-width signs
    (0x20000, 0x2FA1F),  # CJK extensions B-F, compatibility supplement
    (0x30000, 0x323AF),  # CJK extensions G-H
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by every byte-level BPE."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_UNICODE = _bytes_to_unicode()
UNICODE_TO_BYTE = {c: b for b, c in BYTE_TO_UNICODE.items()}


_TO_LATIN1 = {ord(c): b for c, b in UNICODE_TO_BYTE.items()}


def token_bytes(token: str) -> bytes:
    """The raw bytes of a byte-level token string (ValueError if it is not byte-level)."""
    try:
        return token.translate(_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError as e:
        raise ValueError(f"{token!r} is not a byte-level token string") from e


_ALLOWED_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ALLOWED_RANGES)
ALLOWED_CHAR_RE = re.compile(f"[{_ALLOWED_CLASS}]")
_ALLOWED_ONLY_RE = re.compile(f"[{_ALLOWED_CLASS}]*")


def is_allowed_char(ch: str) -> bool:
    """Whether new merges may join this character's bytes (see the module docstring)."""
    return ALLOWED_CHAR_RE.fullmatch(ch) is not None


def _range_allowed(lo: int, hi: int) -> bool:
    """Whether every code point in [lo, hi] is allowed."""
    cp = lo
    while cp <= hi:
        block = next(((a, b) for a, b in ALLOWED_RANGES if a <= cp <= b), None)
        if block is None:
            return False
        cp = block[1] + 1
    return True


def _prefix_completions(prefix: bytes) -> tuple[int, int] | None:
    """Code-point range of the characters that start with this incomplete UTF-8 sequence (None if invalid)."""
    lead = prefix[0]
    if 0xC2 <= lead <= 0xDF:
        need = 2
        value = lead & 0x1F
    elif 0xE0 <= lead <= 0xEF:
        need = 3
        value = lead & 0x0F
    elif 0xF0 <= lead <= 0xF4:
        need = 4
        value = lead & 0x07
    else:
        return None
    if len(prefix) >= need or any(not 0x80 <= b <= 0xBF for b in prefix[1:]):
        return None
    for b in prefix[1:]:
        value = (value << 6) | (b & 0x3F)
    free = 6 * (need - len(prefix))
    return value << free, (value << free) | ((1 << free) - 1)


def safe_new_token(data: bytes) -> bool:
    """The allowed-merge rule: allowed characters, then at most an incomplete start of an always-allowed one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        lead = max((i for i, b in enumerate(data) if not 0x80 <= b <= 0xBF), default=None)
        if lead is None:
            return False
        rng = _prefix_completions(data[lead:])
        if rng is None or not _range_allowed(*rng):
            return False
        try:
            text = data[:lead].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(data) and _ALLOWED_ONLY_RE.fullmatch(text) is not None


@dataclass(frozen=True, eq=False)
class ByteLevelBase:
    """A checked byte-level BPE base: its tokenizer.json as loaded, and the views the extension needs."""

    path: Path
    data: dict[str, Any] = field(repr=False)
    vocab: dict[str, int] = field(repr=False)
    merges: list[tuple[str, str]] = field(repr=False)
    added_tokens: tuple[dict[str, Any], ...] = field(repr=False)
    pre: str
    sha256: str
    merges_as_strings: bool
    tokenizer: Tokenizer = field(repr=False)

    @property
    def model_path(self) -> Path:
        """The tokenizer.json read (the build's shared code names a base by its file)."""
        return self.path

    @property
    def size(self) -> int:
        """Ids the base uses, specials included: new tokens start here."""
        return self.next_id

    def identity(self) -> dict[str, Any]:
        """What later stages and reruns use to recognise this base."""
        return {
            "source": show_path(self.path),
            "model_path": show_path(self.path),
            "sha256": self.sha256,
            "vocab_size": self.next_id,
            "model_type": "BPE (byte-level)",
            "pre_tokenizer": self.pre,
            "merges": len(self.merges),
            "ignore_merges": bool(self.data["model"].get("ignore_merges", False)),
            "added_tokens": len(self.added_tokens),
        }

    @cached_property
    def next_id(self) -> int:
        """The first id after every base id, added and special tokens included."""
        ids = list(self.vocab.values()) + [t["id"] for t in self.added_tokens]
        return max(ids) + 1


def load_json(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """Read a tokenizer.json (given as the file or its directory)."""
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise UnsupportedBaseError(f"{show_path(file)} not found; pass a directory holding a tokenizer.json.")
    try:
        return file, json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnsupportedBaseError(f"{show_path(file)} is not a readable tokenizer.json ({e}).") from e


def detect_pre(data: dict[str, Any], where: str) -> str:
    """Which known byte-level layout this tokenizer.json has ("llama-bpe" or "qwen2"); refuse anything else."""
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        raise UnsupportedBaseError(f"{where}: unknown pre-tokenizer {_short(pre)}; supported: {_SUPPORTED}.")
    split, byte_level = steps
    regex = (split.get("pattern") or {}).get("Regex")
    kind = next((k for k, r in PRE_TOKENIZER_REGEX.items() if r == regex), None)
    ok_split = (
        split.get("type") == "Split" and split.get("behavior") == "Isolated" and not split.get("invert")
    )
    ok_bl = byte_level.get("type") == "ByteLevel" and byte_level.get("use_regex") is False
    ok_bl = ok_bl and not byte_level.get("add_prefix_space")
    if kind is None or not ok_split or not ok_bl:
        raise UnsupportedBaseError(f"{where}: unknown pre-tokenizer {_short(pre)}; supported: {_SUPPORTED}.")
    if data.get("normalizer") != _NORMALIZER[kind]:
        raise UnsupportedBaseError(
            f"{where}: normaliser {_short(data.get('normalizer'))} is not the one a {kind} base has "
            f"({_NORMALIZER[kind]}); supported: {_SUPPORTED}."
        )
    if (data.get("decoder") or {}).get("type") != "ByteLevel":
        raise UnsupportedBaseError(f"{where}: decoder {_short(data.get('decoder'))} is not ByteLevel.")
    return kind


def _short(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False)
    return text if len(text) <= 160 else text[:160] + "…"


def _check_model(model: dict[str, Any], where: str) -> None:
    if model.get("type") != "BPE":
        raise UnsupportedBaseError(
            f"{where}: the model is {model.get('type')}, not BPE; supported: {_SUPPORTED}. "
            "A SentencePiece base goes through the sentencepiece backend (pass its tokenizer.model)."
        )
    odd = [
        k for k in ("unk_token", "continuing_subword_prefix", "end_of_word_suffix", "dropout") if model.get(k)
    ]
    if model.get("byte_fallback") or odd:
        raise UnsupportedBaseError(f"{where}: a BPE with {odd or ['byte_fallback']} is not byte-level.")
    vocab = model.get("vocab") or {}
    singles = {t for t in vocab if len(t) == 1}
    strange = next((t for t in vocab if any(c not in UNICODE_TO_BYTE for c in t)), None)
    if strange is not None or not set(BYTE_TO_UNICODE.values()) <= singles:
        raise UnsupportedBaseError(
            f"{where}: not a byte-level BPE (token {strange!r} is not in the byte alphabet, or the 256 byte "
            f"tokens are missing); supported: {_SUPPORTED}."
        )


def _parse_merges(raw: list[Any], where: str) -> tuple[list[tuple[str, str]], bool]:
    as_strings = bool(raw) and isinstance(raw[0], str)
    merges = []
    for m in raw:
        pair = tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        if len(pair) != 2:
            raise UnsupportedBaseError(f"{where}: malformed merge {m!r}.")
        merges.append(pair)
    return merges, as_strings


def _check_added(added: list[dict[str, Any]], vocab: dict[str, int], where: str) -> None:
    by_id: dict[int, str] = {}
    for t in added:
        content, tid = t["content"], t["id"]
        if content in vocab and vocab[content] != tid:
            raise UnsupportedBaseError(
                f"{where}: added token {content!r} (id {tid}) collides with vocabulary token id {vocab[content]}; "
                "fix the base's added_tokens so each string has one id."
            )
        if by_id.setdefault(tid, content) != content:
            raise UnsupportedBaseError(f"{where}: id {tid} is given to two added tokens; fix the base.")


def _check_sibling_model(file: Path, vocab: dict[str, int]) -> None:
    """A tokenizer.model beside tokenizer.json must be tiktoken ranks equal to the vocabulary, or we refuse."""
    sibling = file.parent / "tokenizer.model"
    if not sibling.is_file():
        return
    import base64
    import binascii

    try:
        ranks = {}
        for line in sibling.read_bytes().splitlines():
            if line.strip():
                b64, rank = line.split()
                ranks[base64.b64decode(b64, validate=True)] = int(rank)
        same = ranks == {token_bytes(t): i for t, i in vocab.items()}
    except (ValueError, binascii.Error):
        same = False
    if not same:
        raise UnsupportedBaseError(
            f"{show_path(sibling)} and {show_path(file)} describe different tokenizers; keep only the one you "
            "mean in the base directory (a byte-level base needs only tokenizer.json)."
        )


def load_base(path: str | os.PathLike[str]) -> ByteLevelBase:
    """Read a byte-level BPE tokenizer.json (or its directory) and check that the extension supports it."""
    file, data = load_json(path)
    where = show_path(file)
    model = data.get("model") or {}
    _check_model(model, where)
    pre = detect_pre(data, where)
    vocab = dict(model["vocab"])
    merges, as_strings = _parse_merges(model.get("merges") or [], where)
    added = tuple(data.get("added_tokens") or [])
    _check_added(list(added), vocab, where)
    _check_sibling_model(file, vocab)
    return ByteLevelBase(
        path=file,
        data=data,
        vocab=vocab,
        merges=merges,
        added_tokens=added,
        pre=pre,
        sha256=sha256_file(file),
        merges_as_strings=as_strings,
        tokenizer=Tokenizer.from_str(json.dumps(data)),
    )


def normalize(data: dict[str, Any], text: str) -> str:
    """The base's normaliser applied to `text` (identity for Llama-3, NFC for Qwen2)."""
    return unicodedata.normalize("NFC", text) if data.get("normalizer") == {"type": "NFC"} else text


@dataclass(frozen=True, eq=False)
class Extended:
    """An extended tokenizer.json and what the extension added."""

    data: dict[str, Any] = field(repr=False)
    added: int
    first_new_id: int
    size: int
    embedding_rows: int
    new_merge_rules: int


def _splits(token: str, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every split of `token` into two tokens with smaller ids, ordered by (left id, right id)."""
    own = vocab[token]
    pairs = [(token[:k], token[k:]) for k in range(1, len(token))]
    pairs = [(a, b) for a, b in pairs if vocab.get(a, own) < own and vocab.get(b, own) < own]
    return sorted(pairs, key=lambda p: (vocab[p[0]], vocab[p[1]]))


def extend(
    base: ByteLevelBase, merges: Sequence[tuple[str, str]], *, pad_to_multiple_of: int = 64
) -> Extended:
    """The base's tokenizer.json with `merges` appended after every base merge, one new id per merge.

    Padding to a multiple of `pad_to_multiple_of` concerns embedding rows only (`embedding_rows`); no token is
    added for it. The returned dict shares its unchanged parts with `base.data`: treat both as read-only.

    The base's added tokens are also written into the model vocabulary at their own ids: tokenizers gives an
    added token that the model does not know the next id after the model's vocabulary, so once new tokens follow
    the specials (Llama-3: 128000-128255, new from 128256) the specials would silently move. Their strings mix
    punctuation and letters, which the pre-tokenizer always splits, so BPE never produces them.
    """
    vocab = dict(base.vocab)
    added_contents = {t["content"] for t in base.added_tokens}
    for t in base.added_tokens:  # see the note on ids below
        vocab.setdefault(t["content"], t["id"])
    first = base.next_id
    new_merges: list[tuple[str, str]] = []
    for k, (a, b) in enumerate(merges):
        token = a + b
        _check_new_merge(base, vocab, added_contents, a, b, token)
        vocab[token] = first + k
        new_merges.extend(_splits(token, vocab))
    model = dict(base.data["model"])
    model["vocab"] = vocab
    fmt = [f"{a} {b}" for a, b in new_merges] if base.merges_as_strings else [[a, b] for a, b in new_merges]
    model["merges"] = list(base.data["model"]["merges"]) + fmt
    data = {**base.data, "model": model}
    size = first + len(merges)
    rows = -(-size // pad_to_multiple_of) * pad_to_multiple_of if pad_to_multiple_of > 1 else size
    return Extended(data, len(merges), first, size, rows, len(new_merges))


def _check_new_merge(
    base: ByteLevelBase, vocab: dict[str, int], added: set[str], a: str, b: str, token: str
) -> None:
    where = show_path(base.path)
    if a not in vocab or b not in vocab:
        raise UnsupportedBaseError(
            f"{where}: new merge ({a!r}, {b!r}) uses a token that is not defined before it."
        )
    if token in added:
        raise UnsupportedBaseError(
            f"{where}: new token {token!r} collides with an added token of the base; remove that added token "
            "or leave this merge out."
        )
    if token in vocab:
        raise UnsupportedBaseError(
            f"{where}: new merge ({a!r}, {b!r}) makes {token!r}, which already exists."
        )
    if not safe_new_token(token_bytes(token)):
        raise UnsupportedBaseError(f"{where}: new merge ({a!r}, {b!r}) breaks the allowed-character rule.")


def _hf_config(base_dir: Path, extended: Extended) -> dict[str, Any]:
    path = base_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key in ("vocab_size",):
        if key in config:
            config[key] = extended.size
    return config


_CARRIED = ("special_tokens_map.json", "chat_template.jinja", "chat_template.json", "generation_config.json")


def write_hf(
    out_dir: str | os.PathLike[str], extended: Extended, base_dir: str | os.PathLike[str]
) -> list[str]:
    """Write tokenizer.json, tokenizer_config.json and the base's chat-template / special-token files."""
    out, src = Path(out_dir), Path(base_dir)
    src = src.parent if src.is_file() else src
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "tokenizer.json", json.dumps(extended.data, ensure_ascii=False).encode("utf-8"))
    atomic_write_json(out / "tokenizer_config.json", _hf_config(src, extended))
    written = ["tokenizer.json", "tokenizer_config.json"]
    for name in _CARRIED:
        if (src / name).is_file():
            atomic_write_bytes(out / name, (src / name).read_bytes())
            written.append(name)
    return written


class ReferenceEncoder:
    """tiktoken over the same ranks: an implementation of byte-level BPE that shares no code with tokenizers.

    Ranks are the token ids (what "ids follow merge order" promises any rank-reading BPE); pass
    `rank_by="merges"` for a base whose ids do not follow its merge order (`ids_follow_merge_order`).
    """

    def __init__(self, data: dict[str, Any], rank_by: str = "id") -> None:
        import tiktoken

        self._data = data
        pre = detect_pre(data, "tokenizer.json")
        ranks, self._rank_to_id = _ranks(data, rank_by)
        specials = {t["content"]: t["id"] for t in data.get("added_tokens") or []}
        top = max(ranks.values()) + 1
        self._special_rank = {c: top + k for k, c in enumerate(specials)}
        self._special_id = {top + k: specials[c] for k, c in enumerate(specials)}
        self._enc = tiktoken.Encoding(
            f"zhtw-{pre}",
            pat_str=PRE_TOKENIZER_REGEX[pre],
            mergeable_ranks=ranks,
            special_tokens=self._special_rank,
        )

    def encode(self, text: str) -> list[int]:
        """Ids of `text` (added tokens in the text are matched, as Hugging Face does; no BOS)."""
        out = self._enc.encode(normalize(self._data, text), allowed_special="all")
        return [self._special_id[r] if r in self._special_id else self._rank_to_id[r] for r in out]


def _model_vocab(data: dict[str, Any]) -> dict[str, int]:
    """The BPE vocabulary without the added tokens that `extend` also writes into it."""
    added = {t["content"] for t in data.get("added_tokens") or []}
    return {t: i for t, i in data["model"]["vocab"].items() if t not in added}


def ids_follow_merge_order(data: dict[str, Any]) -> bool:
    """Whether each merge makes a token whose id is at least that of every earlier merge's token."""
    vocab, last = data["model"]["vocab"], -1
    for m in data["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if vocab[a + b] < last:
            return False
        last = vocab[a + b]
    return True


def _ranks(data: dict[str, Any], rank_by: str) -> tuple[dict[bytes, int], dict[int, int]]:
    """Token bytes -> rank, and rank -> id: ranks are ids, or (rank_by="merges") merge order, bytes first."""
    vocab = _model_vocab(data)
    if rank_by == "id":
        return {token_bytes(t): i for t, i in vocab.items()}, {i: i for i in vocab.values()}
    tokens = [t for _, t in sorted((i, t) for t, i in vocab.items() if len(t) == 1)]
    seen = set(tokens)
    for m in data["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += sorted((t for t in vocab if t not in seen), key=vocab.__getitem__)
    return {token_bytes(t): r for r, t in enumerate(tokens)}, {r: vocab[t] for r, t in enumerate(tokens)}


def reference_encoder(
    tokenizer_json: dict[str, Any] | str | os.PathLike[str], rank_by: str = "id"
) -> ReferenceEncoder:
    """An independent encoder of a (base or extended) byte-level tokenizer.json."""
    data = tokenizer_json if isinstance(tokenizer_json, dict) else load_json(tokenizer_json)[1]
    return ReferenceEncoder(data, rank_by)


def decompose(base: ByteLevelBase, token: str) -> list[int]:
    """Base ids of a new token's bytes: the base merges applied to the byte string alone (no pre-tokeniser)."""
    return [t.id for t in base.tokenizer.model.tokenize(token)]
