"""The SentencePiece BPE backend (Llama-1/2, Mistral v0.1, llama2.c models): `tokenizer.model` is the truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zhtw.tokenizer.backends import Encoder, GGUFVocab, register
from zhtw.tokenizer.errors import UnsupportedBaseError
from zhtw.tokenizer.spmodel import ModelProto, load_proto

MODEL_FILE = "tokenizer.model"


def _model_file(directory: Path) -> Path:
    path = directory / MODEL_FILE if directory.is_dir() else directory
    if not path.is_file():
        raise UnsupportedBaseError(f"{directory} has no {MODEL_FILE}; it is not a SentencePiece tokenizer.")
    return path


def subword_processor(proto: ModelProto) -> Any:
    """A processor that encodes a piece as written: no dummy prefix, no whitespace collapsing."""
    import sentencepiece as spm

    raw = type(proto)()
    raw.CopyFrom(proto)
    raw.normalizer_spec.add_dummy_prefix = False
    raw.normalizer_spec.remove_extra_whitespaces = False
    return spm.SentencePieceProcessor(model_proto=raw.SerializeToString())


class SentencePieceBackend:
    name = "sentencepiece"

    def claims(self, path: Path) -> bool:
        """A tokenizer.model (bare, or in a directory whose tokenizer.json, if any, is not byte-level BPE)."""
        if path.is_file():
            return path.suffix == ".model"
        if not (path / MODEL_FILE).is_file():
            return False
        from zhtw.tokenizer.backends.bytelevel_backend import JSON_FILE, _read_json, is_byte_level

        data = _read_json(path / JSON_FILE) if (path / JSON_FILE).is_file() else None
        return data is None or not is_byte_level(data)

    def load_base(self, path: str | Path) -> Any:
        from zhtw.tokenizer.spmodel import load_base

        return load_base(path)

    def default_new_tokens(self) -> int:
        from zhtw.tokenizer.build import DEFAULT_VOCAB_SIZE

        return DEFAULT_VOCAB_SIZE

    def build_into(self, out: Path, cfg: Any, base: Any, n_new: int, files: list[str], log: Any) -> dict[str, Any]:
        from zhtw.tokenizer.build import build_sentencepiece

        return build_sentencepiece(out, cfg, base, n_new, files, log)

    def verify_cli(self, directory: str | Path, text_paths: list[str], base: str | None) -> str:
        from zhtw.tokenizer.verify import verify_paths

        report = verify_paths(directory, text_paths, base=base)
        return (
            f"OK: {report['vocab_size']:,} pieces ({report['added']:,} added); {report['texts']:,} texts "
            f"({report['corpus_texts']:,} from the recorded corpus), "
            f"{report['english_texts']:,} without Chinese, "
            f"{report['piece_texts']:,} added-piece texts, {report['files_hashed']} file hashes; "
            f"invariants: {', '.join(report['invariants'])}"
        )

    def tokens(self, directory: Path) -> list[str]:
        return [p.piece for p in load_proto(_model_file(directory)).pieces]

    def encoder(self, directory: Path) -> Encoder:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(_model_file(directory)))
        return lambda texts: [list(ids) for ids in sp.encode(list(texts))]

    def new_token_subtokens(self, tok_dir: Path, meta: dict[str, Any]) -> list[list[int]]:
        """Base ids of each added piece, encoded exactly as written (`▁` is the word marker itself)."""
        n_base = int(meta["base_vocab_size"])
        proto = load_proto(_model_file(tok_dir))
        base = type(proto)()
        base.CopyFrom(proto)
        del base.pieces[n_base:]
        sp = subword_processor(base)
        return [list(sp.encode(p.piece)) for p in proto.pieces[n_base:]]

    def gguf_vocab(self, directory: Path, rows: int) -> GGUFVocab:
        from gguf import TokenType
        from sentencepiece import sentencepiece_model_pb2 as pb

        proto = load_proto(_model_file(directory))
        if len(proto.pieces) > rows:
            raise UnsupportedBaseError(
                f"{directory / MODEL_FILE} has {len(proto.pieces):,} pieces but the model only {rows:,} embedding rows."
            )
        kinds = {
            pb.ModelProto.SentencePiece.NORMAL: TokenType.NORMAL,
            pb.ModelProto.SentencePiece.UNKNOWN: TokenType.UNKNOWN,
            pb.ModelProto.SentencePiece.CONTROL: TokenType.CONTROL,
            pb.ModelProto.SentencePiece.USER_DEFINED: TokenType.USER_DEFINED,
            pb.ModelProto.SentencePiece.UNUSED: TokenType.UNUSED,
            pb.ModelProto.SentencePiece.BYTE: TokenType.BYTE,
        }
        tokens = [p.piece.encode("utf-8") for p in proto.pieces]
        scores = [float(p.score) for p in proto.pieces]
        types = [int(kinds[p.type]) for p in proto.pieces]
        for i in range(len(proto.pieces), rows):  # pad rows: never produced by the tokenizer
            tokens.append(f"[PAD{i}]".encode())
            scores.append(-1000.0)
            types.append(int(TokenType.UNUSED))
        config_path = directory / "tokenizer_config.json"
        tok_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        t = proto.trainer_spec
        specials = {"bos": t.bos_id, "eos": t.eos_id, "unk": t.unk_id, "pad": t.pad_id}
        return GGUFVocab(
            model="llama",
            pre="default",
            tokens=tokens,
            types=types,
            scores=scores,
            merges=None,
            special_ids={k: v for k, v in specials.items() if v >= 0},
            add_bos=bool(tok_config.get("add_bos_token", True)),
            add_eos=bool(tok_config.get("add_eos_token", False)),
            add_space_prefix=bool(proto.normalizer_spec.add_dummy_prefix),
            remove_extra_whitespaces=bool(proto.normalizer_spec.remove_extra_whitespaces),
        )

    def describe(self, meta: dict[str, Any]) -> str:
        base = meta.get("base", {})
        return (
            f"SentencePiece BPE: {int(meta.get('base_vocab_size', 0)):,} base pieces "
            f"({Path(str(base.get('model_path', 'tokenizer.model'))).name}, sha256 {str(base.get('sha256', ''))[:12]}…) "
            f"+ {int(meta.get('num_added', 0)):,} zh-TW pieces = {int(meta.get('vocab_size', 0)):,}"
        )


register(SentencePieceBackend())
