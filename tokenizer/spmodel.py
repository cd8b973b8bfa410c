"""The base tokenizer: find, load and check a SentencePiece BPE model, and the protobuf helpers around it.

Only SentencePiece BPE models with byte fallback are supported (Llama-1/2, Mistral, llama2.c models such as
stories260K): their piece scores are merge priorities, so new pieces can be appended below every base piece
without changing how the base pieces combine.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

from zhtw.common.fsutil import files_intact as files_intact  # re-exported: other modules import it from here
from zhtw.common.fsutil import sha256_file as sha256_file
from zhtw.common.fsutil import show_path
from zhtw.tokenizer.errors import CorruptModelError, UnsupportedBaseError

ModelProto = pb.ModelProto
Piece = pb.ModelProto.SentencePiece

NORMAL = Piece.NORMAL
UNKNOWN = Piece.UNKNOWN
CONTROL = Piece.CONTROL
USER_DEFINED = Piece.USER_DEFINED
BYTE = Piece.BYTE
UNUSED = Piece.UNUSED

SUPPORTED = (
    "SentencePiece BPE models with byte fallback, no user-defined pieces and scores falling in id order "
    "(Llama-1/Llama-2, Mistral-7B v0.1, "
    "llama2.c models such as stories260K), given as a bare tokenizer.model or a Hugging Face directory "
    "that contains tokenizer.model"
)

_MODEL_TYPE_NAMES = {v: k for k, v in pb.TrainerSpec.ModelType.items()}
_KNOWN_TYPES = frozenset(Piece.Type.values())


MAX_MODEL_BYTES = 256 << 20  # far above any SentencePiece model (Llama-2's is 0.5 MB); refuse before reading
PROBE_TEXT = "Hello world, 3.14 x  y\tz\n臺灣的首都是臺北市。「你好」🙂 é ½"
BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]


def read_model_bytes(path: str | Path) -> bytes:
    """The bytes of a model file; a missing, unreadable, special or oversized file is refused by name."""
    shown = show_path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise UnsupportedBaseError(f"cannot read {shown}: {e.strerror}. Supported: {SUPPORTED}.") from e
    if not Path(path).is_file():
        raise UnsupportedBaseError(
            f"{shown} is not a regular file; give a tokenizer.model file. Supported: {SUPPORTED}."
        )
    if st.st_size > MAX_MODEL_BYTES:
        raise UnsupportedBaseError(
            f"{shown} has {st.st_size:,} bytes, far more than any SentencePiece model; "
            "give the tokenizer.model file."
        )
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UnsupportedBaseError(f"cannot read {shown}: {e.strerror}.") from e


def load_proto(path: str | Path) -> ModelProto:
    """Parse a SentencePiece model file; refuse anything that is not one."""
    data = read_model_bytes(path)
    proto = ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError, which is not exported consistently
        raise UnsupportedBaseError(
            f"{show_path(path)} is not a SentencePiece model ({e}). Supported: {SUPPORTED}."
        ) from e
    if not proto.pieces:
        raise UnsupportedBaseError(
            f"{show_path(path)} holds no SentencePiece pieces. Supported: {SUPPORTED}."
        )
    return proto


@dataclass
class SpecialTokens:
    """The named special tokens and BOS/EOS policy that the extended tokenizer must keep."""

    unk: str | None
    bos: str | None
    eos: str | None
    pad: str | None
    add_bos: bool = True
    add_eos: bool = False
    extra_config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "unk_token": self.unk,
            "bos_token": self.bos,
            "eos_token": self.eos,
            "pad_token": self.pad,
            "add_bos_token": self.add_bos,
            "add_eos_token": self.add_eos,
        }


@dataclass
class BaseTokenizer:
    """A checked base: its model file, parsed proto, hash and Hugging Face special-token settings."""

    source: str
    model_path: Path
    proto: ModelProto
    sha256: str
    special: SpecialTokens

    @property
    def size(self) -> int:
        return len(self.proto.pieces)

    def identity(self) -> dict[str, Any]:
        """What later stages and reruns use to recognise this base."""
        return {
            "source": show_path(self.source),
            "model_path": show_path(self.model_path),
            "sha256": self.sha256,
            "vocab_size": self.size,
            "model_type": _MODEL_TYPE_NAMES.get(self.proto.trainer_spec.model_type, "?"),
            "byte_fallback": self.proto.trainer_spec.byte_fallback,
            "min_score": min_score(self.proto),
            "special_tokens": self.special.as_dict(),
            "special_token_ids": special_token_ids(self.proto),
            "normalizer": normalizer_summary(self.proto),
        }


def find_model_file(base: str | Path) -> Path:
    """The tokenizer.model of a bare file or a Hugging Face directory."""
    path = Path(base).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        model = path / "tokenizer.model"
        if model.is_file():
            return model
        what = "a tokenizer.json only" if (path / "tokenizer.json").is_file() else "no tokenizer.model"
        raise UnsupportedBaseError(
            f"{show_path(base)} holds {what}; zhtw-tok needs the SentencePiece tokenizer.model. Supported: "
            f"{SUPPORTED}. Byte-level BPE tokenizers (Llama-3, GPT-2 style) cannot be extended by this tool."
        )
    if path.exists():
        raise UnsupportedBaseError(f"base tokenizer {show_path(base)} is not a regular file or a directory.")
    raise UnsupportedBaseError(
        f"base tokenizer {show_path(base)} does not exist: give a tokenizer.model file or a directory "
        "with one."
    )


def check_supported(proto: ModelProto, where: str) -> None:
    """Refuse bases whose merge semantics this tool cannot extend safely."""
    spec = proto.trainer_spec
    if spec.model_type != pb.TrainerSpec.BPE:
        name = _MODEL_TYPE_NAMES.get(spec.model_type, str(spec.model_type))
        raise UnsupportedBaseError(
            f"{where} is a SentencePiece {name} model. Supported: {SUPPORTED}. "
            "A unigram vocabulary has no merge order to extend; use a BPE base such as Llama-2's tokenizer.model."
        )
    n_bytes = sum(1 for p in proto.pieces if p.type == BYTE)
    if not spec.byte_fallback or n_bytes != 256:
        raise UnsupportedBaseError(
            f"{where} has no byte fallback (byte_fallback={spec.byte_fallback}, {n_bytes} byte pieces). "
            f"Supported: {SUPPORTED}. Without byte fallback unknown characters become <unk> and cannot round-trip."
        )
    user = [i for i, p in enumerate(proto.pieces) if p.type == USER_DEFINED]
    if user:
        raise UnsupportedBaseError(
            f"{where} has {len(user)} user-defined pieces (ids {user[:3]}); they are matched before BPE "
            f"and are not supported. Supported: {SUPPORTED}."
        )
    if any(p.type == UNUSED for p in proto.pieces):
        raise UnsupportedBaseError(f"{where} has UNUSED pieces, which are not supported. Supported: {SUPPORTED}.")
    check_merge_order(proto, where)


NEVER_MERGED = -1e9  # Llama-2 scores its whitespace-run pieces this low: they tie, but nothing outranks them


def check_merge_order(proto: ModelProto, where: str) -> None:
    """Refuse a base whose piece scores do not fall with the id (apart from Llama-2's never-merged pieces).

    A score is a merge priority. A base that appended pieces with tied or higher scores (Chinese-LLaMA-2:
    23k pieces at score 0 above Llama-2's -1 .. -31,740) is tokenised differently by sentencepiece, which
    breaks ties by position, and by the fast tokenizer, which needs one merge order; new pieces below
    such a base could never be verified, so it is refused before any training.
    """
    last = math.inf
    for i, p in enumerate(proto.pieces):
        if p.type != NORMAL or p.score <= NEVER_MERGED:
            continue
        if p.score >= last:
            n_bad = sum(1 for q in proto.pieces[i:] if q.type == NORMAL and q.score >= last)
            raise UnsupportedBaseError(
                f"{where} is not in merge order: {n_bad:,} pieces from id {i} ({p.piece!r}, score {p.score:g}) "
                f"score as high as or higher than the piece before them ({last:g}), as in a vocabulary merged "
                "by Chinese-LLaMA-2; sentencepiece and the fast tokenizer disagree on such ties. Extend the "
                f"original base instead (e.g. Llama-2's tokenizer.model). Supported: {SUPPORTED}."
            )
        last = p.score


def _corrupt(where: str, what: str) -> CorruptModelError:
    return CorruptModelError(
        f"{where} is damaged: {what}. Replace it with an intact copy of the tokenizer.model "
        "(compare its checksum)."
    )


def _piece_strings(proto: ModelProto, where: str) -> list[str]:
    """Every piece as text; a piece whose bytes are not UTF-8 is corruption, not a tokenizer."""
    out = []
    for i, p in enumerate(proto.pieces):
        try:
            piece = p.piece
        except UnicodeDecodeError as e:
            raise _corrupt(where, f"piece id {i} is not valid UTF-8 ({e.reason})") from e
        if not isinstance(piece, str):  # protobuf returns bytes for a proto2 string that is not UTF-8
            raise _corrupt(where, f"piece id {i} ({piece!r}) is not valid UTF-8")
        out.append(piece)
    return out


def check_settings_text(proto: ModelProto, where: str) -> None:
    """Every text setting (trainer, normalizer) is valid UTF-8: they are recorded in the metadata."""
    for spec in (proto.trainer_spec, proto.normalizer_spec, proto.denormalizer_spec):
        for fd, value in spec.ListFields():
            if fd.type != fd.TYPE_STRING:
                continue
            for v in [value] if isinstance(value, (str, bytes)) else value:
                if not isinstance(v, str):
                    name = f"{spec.DESCRIPTOR.name}.{fd.name}"
                    raise _corrupt(where, f"setting {name} ({v[:40]!r}) is not valid UTF-8")


def check_pieces(proto: ModelProto, where: str) -> None:
    """Pieces non-empty and unique, scores finite, the 256 byte pieces exactly <0x00>..<0xFF>."""
    pieces = _piece_strings(proto, where)
    seen: dict[str, int] = {}
    for i, (s, p) in enumerate(zip(pieces, proto.pieces)):
        if not s:
            raise _corrupt(where, f"piece id {i} is empty")
        if s in seen:
            raise _corrupt(where, f"piece {s!r} occurs at ids {seen[s]} and {i}")
        seen[s] = i
        if not math.isfinite(p.score):
            raise _corrupt(where, f"piece id {i} ({s!r}) has score {p.score}")
        if p.type not in _KNOWN_TYPES:
            raise _corrupt(where, f"piece id {i} ({s!r}) has unknown type {p.type}")
    byte_pieces = [s for s, p in zip(pieces, proto.pieces) if p.type == BYTE]
    if byte_pieces and byte_pieces != BYTE_PIECES:  # none at all: `check_supported` says "no byte fallback"
        wrong = (s for s, want in zip(byte_pieces, BYTE_PIECES) if s != want)
        bad = next(wrong, f"{len(byte_pieces)} of them")
        raise _corrupt(where, f"the byte pieces are not <0x00>..<0xFF> in order (found {bad!r})")


def check_special_ids(proto: ModelProto, where: str) -> None:
    """One <unk> at unk_id; bos/eos/pad absent (-1) or distinct CONTROL pieces."""
    spec = proto.trainer_spec
    n = len(proto.pieces)
    unknown = [i for i, p in enumerate(proto.pieces) if p.type == UNKNOWN]
    if unknown != [spec.unk_id]:
        raise _corrupt(where, f"unk_id is {spec.unk_id} but the UNKNOWN pieces are at ids {unknown}")
    used = {spec.unk_id}
    for key in ("bos_id", "eos_id", "pad_id"):
        i = getattr(spec, key)
        if i == -1:
            continue
        if not 0 <= i < n or proto.pieces[i].type != CONTROL or i in used:
            raise _corrupt(where, f"{key} {i} is not a distinct control piece among {n:,} pieces")
        used.add(i)


def expected_roundtrip(text: str, sp: spm.SentencePieceProcessor, add_dummy_prefix: bool) -> str:
    """`text` after the model's own normalizer (identity for Llama-2), as decode should give it back."""
    norm = sp.normalize(text).replace("▁", " ")
    return norm[1:] if add_dummy_prefix and norm.startswith(" ") and text else norm


def check_loads(proto: ModelProto, where: str) -> None:
    """sentencepiece itself loads the model and round-trips a probe text through byte fallback."""
    try:
        sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        ids = sp.encode(PROBE_TEXT)
        decoded = sp.decode(ids)
        want = expected_roundtrip(PROBE_TEXT, sp, proto.normalizer_spec.add_dummy_prefix)
    except Exception as e:  # sentencepiece raises RuntimeError, UnicodeDecodeError, ... on damaged models
        raise _corrupt(where, f"sentencepiece cannot use it ({type(e).__name__}: {str(e)[:200]})") from e
    if decoded != want:
        raise _corrupt(where, f"sentencepiece decodes a probe text as {decoded!r}, not {want!r}")


def min_score(proto: ModelProto) -> float:
    """Lowest score of a NORMAL piece: every new piece goes below it."""
    return min(p.score for p in proto.pieces if p.type == NORMAL)


def special_token_ids(proto: ModelProto) -> dict[str, int]:
    spec = proto.trainer_spec
    return {"unk_id": spec.unk_id, "bos_id": spec.bos_id, "eos_id": spec.eos_id, "pad_id": spec.pad_id}


def normalizer_summary(proto: ModelProto) -> dict[str, Any]:
    ns = proto.normalizer_spec
    return {
        "name": ns.name,
        "add_dummy_prefix": ns.add_dummy_prefix,
        "remove_extra_whitespaces": ns.remove_extra_whitespaces,
        "escape_whitespaces": ns.escape_whitespaces,
        "has_precompiled_charsmap": bool(ns.precompiled_charsmap),
    }


def _token_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


def _special_from_proto(proto: ModelProto) -> SpecialTokens:
    spec = proto.trainer_spec

    def piece(i: int) -> str | None:
        return proto.pieces[i].piece if 0 <= i < len(proto.pieces) else None

    return SpecialTokens(unk=piece(spec.unk_id), bos=piece(spec.bos_id), eos=piece(spec.eos_id), pad=piece(spec.pad_id))


def _read_config(path: Path) -> dict[str, Any]:
    """A Hugging Face JSON config as a dict ({} when absent); a damaged one is refused by name."""
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnsupportedBaseError(f"cannot read {show_path(path)}: {e}; fix or remove that file.") from e
    if not isinstance(config, dict):
        raise UnsupportedBaseError(f"{show_path(path)} is not a JSON object; fix or remove that file.")
    return config


def _special_from_hf(directory: Path, proto: ModelProto) -> SpecialTokens:
    """Special tokens from a Hugging Face directory's config files, falling back to the proto."""
    special = _special_from_proto(proto)
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        config.update(_read_config(directory / name))
    if not config:
        return special
    for attr in ("unk", "bos", "eos", "pad"):
        key = f"{attr}_token"
        if key in config:
            setattr(special, attr, _token_str(config[key]))
    special.add_bos = bool(config.get("add_bos_token", special.add_bos))
    special.add_eos = bool(config.get("add_eos_token", special.add_eos))
    for key in ("model_max_length", "chat_template", "padding_side"):
        if key in config:
            special.extra_config[key] = config[key]
    vocab = {p.piece for p in proto.pieces}
    for attr in ("unk", "bos", "eos", "pad"):
        tok = getattr(special, attr)
        if tok is not None and tok not in vocab:
            raise UnsupportedBaseError(
                f"{show_path(directory)}: {attr}_token {tok!r} is not a piece of tokenizer.model; extra "
                f"special tokens outside the SentencePiece model are not supported. Supported: {SUPPORTED}."
            )
    return special


def load_base(base: str | Path) -> BaseTokenizer:
    """Find, parse and fully check a base tokenizer; raise `UnsupportedBaseError` saying what is supported.

    Everything the merge relies on is checked here, before any training, so that a damaged file
    (one flipped byte) is refused by name instead of failing after minutes of work.
    """
    model_path = find_model_file(base)
    proto = load_proto(model_path)
    where = show_path(model_path)
    check_pieces(proto, where)
    check_settings_text(proto, where)
    check_supported(proto, where)
    check_special_ids(proto, where)
    check_loads(proto, where)
    directory = Path(base).expanduser()
    special = _special_from_hf(directory, proto) if directory.is_dir() else _special_from_proto(proto)
    return BaseTokenizer(
        source=str(base), model_path=model_path.resolve(), proto=proto, sha256=sha256_file(model_path),
        special=special,
    )
