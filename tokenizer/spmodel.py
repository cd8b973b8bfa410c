"""The base tokenizer: find, load and check a SentencePiece BPE model, and the protobuf helpers around it.

Only SentencePiece BPE models with byte fallback are supported (Llama-1/2, Mistral, llama2.c models such as
stories260K): their piece scores are merge priorities, so new pieces can be appended below every base piece
without changing how the base pieces combine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentencepiece import sentencepiece_model_pb2 as pb

from zhtw.tokenizer.errors import UnsupportedBaseError

ModelProto = pb.ModelProto
Piece = pb.ModelProto.SentencePiece

NORMAL = Piece.NORMAL
UNKNOWN = Piece.UNKNOWN
CONTROL = Piece.CONTROL
USER_DEFINED = Piece.USER_DEFINED
BYTE = Piece.BYTE
UNUSED = Piece.UNUSED

SUPPORTED = (
    "SentencePiece BPE models with byte fallback and no user-defined pieces (Llama-1/Llama-2, Mistral-7B v0.1, "
    "llama2.c models such as stories260K), given as a bare tokenizer.model or a Hugging Face directory "
    "that contains tokenizer.model"
)

_MODEL_TYPE_NAMES = {v: k for k, v in pb.TrainerSpec.ModelType.items()}


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_intact(directory: Path, digests: dict[str, str]) -> bool:
    """Whether every file recorded in `digests` (name -> SHA-256) is in `directory` with that digest."""
    return all((directory / n).is_file() and sha256_file(directory / n) == d for n, d in digests.items())


def load_proto(path: str | Path) -> ModelProto:
    """Parse a SentencePiece model file; refuse anything that is not one."""
    data = Path(path).read_bytes()
    proto = ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError, which is not exported consistently
        raise UnsupportedBaseError(f"{path} is not a SentencePiece model ({e}). Supported: {SUPPORTED}.") from e
    if not proto.pieces:
        raise UnsupportedBaseError(f"{path} holds no SentencePiece pieces. Supported: {SUPPORTED}.")
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
            "source": self.source,
            "model_path": str(self.model_path),
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
            f"{base} holds {what}; zhtw-tok needs the SentencePiece tokenizer.model. Supported: {SUPPORTED}. "
            "Byte-level BPE tokenizers (Llama-3, GPT-2 style) cannot be extended by this tool."
        )
    raise UnsupportedBaseError(f"base tokenizer {base} does not exist: give a tokenizer.model file or a directory with one.")


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
    user = [p.piece for p in proto.pieces if p.type == USER_DEFINED]
    if user:
        raise UnsupportedBaseError(
            f"{where} has {len(user)} user-defined pieces (e.g. {user[:3]}); they are matched before BPE and are "
            f"not supported. Supported: {SUPPORTED}."
        )
    if any(p.type == UNUSED for p in proto.pieces):
        raise UnsupportedBaseError(f"{where} has UNUSED pieces, which are not supported. Supported: {SUPPORTED}.")


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


def _special_from_hf(directory: Path, proto: ModelProto) -> SpecialTokens:
    """Special tokens from a Hugging Face directory's config files, falling back to the proto."""
    special = _special_from_proto(proto)
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = directory / name
        if f.is_file():
            config.update(json.loads(f.read_text(encoding="utf-8")))
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
                f"{directory}: {attr}_token {tok!r} is not a piece of tokenizer.model; extra special tokens outside "
                f"the SentencePiece model are not supported. Supported: {SUPPORTED}."
            )
    return special


def load_base(base: str | Path) -> BaseTokenizer:
    """Find, parse and check a base tokenizer; raise `UnsupportedBaseError` saying what is supported."""
    model_path = find_model_file(base)
    proto = load_proto(model_path)
    check_supported(proto, str(base))
    directory = Path(base).expanduser()
    special = _special_from_hf(directory, proto) if directory.is_dir() else _special_from_proto(proto)
    return BaseTokenizer(
        source=str(base), model_path=model_path.resolve(), proto=proto, sha256=sha256_file(model_path), special=special
    )
