"""The byte-level BPE backend (Llama-3.x, Qwen2/2.5): the base's `tokenizer.json` is the truth.

Extension = continued BPE training (`zhtw.tokenizer.bytelevel_train`): new merges after every base merge,
new ids after every base and special id, only CJK characters and punctuation joined (`bytelevel.safe_new_token`).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from zhtw.tokenizer.backends import Encoder, GGUFVocab, register
from zhtw.tokenizer.errors import UnsupportedBaseError

JSON_FILE = "tokenizer.json"
DEFAULT_NEW_TOKENS = 32768
BYTES_PER_CHAR = 3  # --sample-mb is MB of UTF-8; Chinese text is ~3 bytes a character


def _json_file(path: Path) -> Path:
    file = path / JSON_FILE if path.is_dir() else path
    if not file.is_file():
        raise UnsupportedBaseError(f"{path} has no {JSON_FILE}; it is not a byte-level BPE tokenizer.")
    return file


def is_byte_level(data: dict[str, Any]) -> bool:
    """A BPE tokenizer.json whose pre-tokenizer or decoder is ByteLevel (GPT-2 style)."""
    text = json.dumps([data.get("pre_tokenizer"), data.get("decoder")])
    return (data.get("model") or {}).get("type") == "BPE" and '"ByteLevel"' in text


def _read_json(file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def base_tokenizer(tok_dir: Path, meta: dict[str, Any]) -> Any:
    """The base tokenizer rebuilt from an extended tokenizer.json: new ids and new merges cut off."""
    from tokenizers import Tokenizer

    data = copy.deepcopy(json.loads(_json_file(tok_dir).read_text(encoding="utf-8")))
    first_new, n_merges = int(meta["base_vocab_size"]), int(meta["base_merges"])
    model = data["model"]
    model["vocab"] = {t: i for t, i in model["vocab"].items() if i < first_new}
    model["merges"] = model["merges"][:n_merges]
    return Tokenizer.from_str(json.dumps(data))


class ByteLevelBackend:
    name = "bytelevel-bpe"

    def claims(self, path: Path) -> bool:
        """A tokenizer.json that is byte-level BPE, or any tokenizer.json without a tokenizer.model beside it
        (so that `load_base` names what is unsupported about it, e.g. WordPiece or Unigram)."""
        file = path / JSON_FILE if path.is_dir() else path
        if not file.is_file() or file.suffix != ".json":
            return False
        data = _read_json(file)
        return (data is not None and is_byte_level(data)) or not (file.parent / "tokenizer.model").is_file()

    def load_base(self, path: str | Path) -> Any:
        from zhtw.tokenizer.bytelevel import load_base

        return load_base(path)

    def default_new_tokens(self) -> int:
        return DEFAULT_NEW_TOKENS

    def build_into(self, out: Path, cfg: Any, base: Any, n_new: int, files: list[str], log: Any) -> dict[str, Any]:
        """Learn merges on a balanced sample, write the HF files, verify; return the metadata fields."""
        from zhtw.tokenizer.bytelevel import extend, write_hf
        from zhtw.tokenizer.bytelevel_train import balanced_texts, learn_merges

        total_chars = int(cfg.sample_mb * 1e6 / BYTES_PER_CHAR)
        t0 = time.perf_counter()
        texts = balanced_texts(files, total_chars, text_key=cfg.text_key)
        chars = sum(map(len, texts))
        how = (f"an equal share of {total_chars:,} per file" if chars >= 0.99 * total_chars
               else f"the whole corpus: less than --sample-mb's {total_chars:,}")  # fmt: skip
        log(f"sample: {len(texts):,} documents, {chars:,} characters ({how})")
        merges = learn_merges(base, texts, n_new, progress=_progress(log) if cfg.progress else None,
                              max_token_chars=cfg.max_token_chars)  # fmt: skip
        train_seconds = time.perf_counter() - t0
        extended = extend(base, merges)
        files_written = write_hf(out, extended, base.path)
        log(f"learned {len(merges):,} merges -> {extended.added:,} new tokens (ids {extended.first_new_id:,}..)")
        meta = {
            "backend": self.name,
            "base": base.identity(),
            "vocab_size": extended.size,
            "base_vocab_size": extended.first_new_id,
            "base_merges": len(base.merges),
            "num_added": extended.added,
            "new_merge_rules": extended.new_merge_rules,
            "added_id_range": [extended.first_new_id, extended.size - 1],
            "embedding_rows_padded": extended.embedding_rows,
            "corpus": {"paths": [str(p) for p in cfg.corpus], "documents": len(texts), "characters": chars},
            "training": {"merges_learned": len(merges), "seconds": round(train_seconds, 2),
                         "max_token_chars": cfg.max_token_chars},  # fmt: skip
        }
        if cfg.verify:
            meta["verify"] = self.verify(out, base, texts[:: max(1, len(texts) // 200)][:200], log)
        return {"meta": meta, "files": files_written}

    def verify(self, out: Path, base: Any, texts: list[str], log: Any) -> dict[str, Any]:
        from zhtw.tokenizer.bytelevel import is_allowed_char
        from zhtw.tokenizer.bytelevel_verify import verify
        from zhtw.tokenizer.verify import default_texts

        t0 = time.perf_counter()
        # texts with no character a new merge may join must tokenise exactly as the base does
        english = [t for t in default_texts() if not any(map(is_allowed_char, t))]
        texts = list(texts) + [t for t in default_texts() if any(map(is_allowed_char, t))]
        report = verify(out, base, texts, english)
        log(f"verified: {report.texts + report.english_texts:,} texts, all byte-level invariants hold")
        return {"texts": report.texts, "english_texts": report.english_texts, "checks": list(report.checks),
                "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip

    def verify_cli(self, directory: str | Path, text_paths: list[str], base: str | None) -> str:
        """`zhtw-tok verify DIR`: recorded hashes, then every invariant on the given and recorded texts."""
        from zhtw.common.fsutil import files_intact
        from zhtw.tokenizer.backends import read_metadata
        from zhtw.tokenizer.bytelevel import load_base
        from zhtw.tokenizer.errors import VerificationError
        from zhtw.tokenizer.textfiles import read_texts

        out = Path(directory)
        meta = read_metadata(out)
        if not files_intact(out, meta.get("files", {})):
            raise VerificationError("file_hashes", f"{out}: files differ from the SHA-256 recorded at build time")
        base_path = base or meta["base"]["model_path"]
        loaded = load_base(base_path)
        if loaded.sha256 != meta["base"]["sha256"]:
            raise VerificationError("metadata", f"{base_path} is not the base this tokenizer was built on")
        texts = [t for p in text_paths for t in read_texts(p)]
        texts += _recorded_corpus_sample(meta)
        report = self.verify(out, loaded, texts, lambda _m: None)
        return (
            f"OK: {meta['vocab_size']:,} ids ({meta['num_added']:,} added); {report['texts']:,} texts, "
            f"{report['english_texts']:,} English/code texts; file hashes and invariants: {', '.join(report['checks'])}"
        )

    def encoder(self, directory: Path) -> Encoder:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(_json_file(directory)))
        return lambda texts: [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]

    def tokens(self, directory: Path) -> list[str]:
        """Token strings by id (gaps as empty strings)."""
        data = json.loads(_json_file(directory).read_text(encoding="utf-8"))
        by_id = {i: t for t, i in data["model"]["vocab"].items()}
        by_id.update({t["id"]: t["content"] for t in data.get("added_tokens") or []})
        return [by_id.get(i, "") for i in range(max(by_id) + 1)]

    def new_token_subtokens(self, tok_dir: Path, meta: dict[str, Any]) -> list[list[int]]:
        """Base ids of each new token's bytes: the base merges applied to the token alone."""
        base = base_tokenizer(tok_dir, meta)
        tokens = self.tokens(tok_dir)[int(meta["base_vocab_size"]) :]
        return [[t.id for t in base.model.tokenize(tok)] for tok in tokens]

    def gguf_vocab(self, directory: Path, rows: int) -> GGUFVocab:
        from zhtw.tokenizer.bytelevel_gguf import gguf_vocab

        v = gguf_vocab(directory, vocab_size=rows)
        if len(v.tokens) > rows:
            raise UnsupportedBaseError(f"{directory} has {len(v.tokens):,} tokens but the model only {rows:,} rows.")
        specials = {"bos": v.bos_id, "eos": v.eos_id, "pad": v.pad_id}
        return GGUFVocab(
            model=v.model,
            pre=v.pre,
            tokens=[t.encode("utf-8") for t in v.tokens],
            types=list(v.token_types),
            scores=None,
            merges=list(v.merges),
            special_ids={k: i for k, i in specials.items() if i is not None},
            add_bos=v.add_bos,
            add_eos=False,
        )

    def describe(self, meta: dict[str, Any]) -> str:
        base = meta.get("base", {})
        return (
            f"byte-level BPE ({base.get('pre_tokenizer', '?')} pre-tokenizer): {int(meta.get('base_vocab_size', 0)):,} "
            f"base ids ({int(meta.get('base_merges', 0)):,} merges) + {int(meta.get('num_added', 0)):,} zh-TW tokens "
            f"from {int(meta.get('training', {}).get('merges_learned', 0)):,} continued merges"
        )


def _recorded_corpus_sample(meta: dict[str, Any], limit: int = 300) -> list[str]:
    """Up to `limit` documents of the corpus recorded at build time, where its files still exist."""
    from zhtw.corpus.textio import iter_texts

    paths = [p for p in meta.get("corpus", {}).get("paths", []) if Path(p).exists()]
    if not paths:
        return []
    texts: list[str] = []
    for text in iter_texts(paths):
        texts.append(text[:2000])
        if len(texts) >= limit:
            break
    return texts


def _progress(log: Any) -> Any:
    """A progress callback for learn_merges that logs every 10%."""
    state = {"next": 0.1}

    def report(done: int, total: int) -> None:
        if total and done / total >= state["next"]:
            log(f"  merges: {done:,}/{total:,}")
            state["next"] += 0.1

    return report


register(ByteLevelBackend())
