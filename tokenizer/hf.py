"""Hugging Face files for a SentencePiece BPE model, built deliberately so that ids match sentencepiece.

Why not `save_pretrained` or transformers' converter: a SentencePiece BPE model has no merge list. It merges
any adjacent pair whose concatenation is a piece, highest piece score first, leftmost first on ties. The
converter's merge order and Metaspace pre-tokenizer differ from that on runs of spaces, on text that starts
with a space and on CJK merge order (see GUIDE.md section 3). Here the merge list holds every split (a, b) of
every piece into two pieces, ranked by the merged piece's score; among pieces of equal score (Llama's runs of
spaces, all at -1e9) the split with the longer left part ranks first, which reproduces sentencepiece's
leftmost-first growth of whitespace runs. The normalizer prepends the dummy prefix and escapes spaces exactly
as sentencepiece does, so `AutoTokenizer` gives sentencepiece's ids on every string.

What we promise for leading spaces and runs of spaces (tested, checked by `zhtw-tok verify`):
- `AutoTokenizer.from_pretrained(dir)` (our tokenizer.json as written) = sentencepiece ids on every text.
- `LlamaTokenizer.from_pretrained(dir)` rebuilds its own Metaspace(prepend_scheme="first") pre-tokenizer in
  transformers 5, whatever tokenizer.json says. It equals sentencepiece on every text that does not start
  with a space; a text that starts with a space it encodes as sentencepiece encodes the text without that
  first space (and its decode drops that space). This is the same behaviour it has for the base Llama-2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

from zhtw.common.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from zhtw.tokenizer.spmodel import CONTROL, NORMAL, UNKNOWN, ModelProto, SpecialTokens

TOKENIZER_CLASS = "TokenizersBackend"
HF_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def bpe_merges(proto: ModelProto) -> list[tuple[str, str]]:
    """Every split of every NORMAL piece into two NORMAL pieces, in sentencepiece's priority order."""
    index = {p.piece: i for i, p in enumerate(proto.pieces) if p.type == NORMAL}
    ranked = []
    for i, p in enumerate(proto.pieces):
        if p.type != NORMAL:
            continue
        s = p.piece
        for k in range(1, len(s)):
            a, b = s[:k], s[k:]
            if a in index and b in index:
                ranked.append((-p.score, -k, i, a, b))
    ranked.sort()
    return [(a, b) for *_, a, b in ranked]


def llama_class_compatible(proto: ModelProto) -> bool:
    """Whether transformers' LlamaTokenizer (Metaspace, no normalizer) can express this model's normalizer."""
    ns = proto.normalizer_spec
    return ns.add_dummy_prefix and not ns.remove_extra_whitespaces and not ns.precompiled_charsmap


def _normalizer(proto: ModelProto) -> normalizers.Normalizer:
    ns = proto.normalizer_spec
    steps: list[normalizers.Normalizer] = []
    if ns.precompiled_charsmap:
        steps.append(normalizers.Precompiled(ns.precompiled_charsmap))
    if ns.remove_extra_whitespaces:
        steps += [
            normalizers.Replace(Regex(" {2,}"), " "),
            normalizers.Replace(Regex(r"\A "), ""),
            normalizers.Replace(Regex(r" \z"), ""),
        ]
    if ns.add_dummy_prefix:
        steps.append(normalizers.Prepend("▁"))
    if ns.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "▁"))
    return normalizers.Sequence(steps)


def _post_processor(special: SpecialTokens, ids: dict[str, int]) -> processors.PostProcessor:
    single, pair, used = "$A", "$A $B:1", []
    if special.add_bos and special.bos:
        single, pair = f"{special.bos} {single}", f"{special.bos} $A {special.bos}:1 $B:1"
        used.append((special.bos, ids[special.bos]))
    if special.add_eos and special.eos:
        single = f"{single} {special.eos}"
        pair = pair.replace("$A ", f"$A {special.eos} ", 1) + f" {special.eos}:1"
        used.append((special.eos, ids[special.eos]))
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=used)


def build_fast_tokenizer(proto: ModelProto, special: SpecialTokens) -> Tokenizer:
    """A `tokenizers.Tokenizer` that reproduces sentencepiece's ids for this BPE model."""
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    unk = proto.pieces[proto.trainer_spec.unk_id].piece
    tok = Tokenizer(BPE(vocab=vocab, merges=bpe_merges(proto), unk_token=unk, fuse_unk=True, byte_fallback=True))
    tok.normalizer = _normalizer(proto)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    tok.add_special_tokens(
        [AddedToken(p.piece, special=True, normalized=False) for p in proto.pieces if p.type in (CONTROL, UNKNOWN)]
    )
    tok.post_processor = _post_processor(special, vocab)
    return tok


def tokenizer_config(proto: ModelProto, special: SpecialTokens) -> dict[str, Any]:
    """tokenizer_config.json: loads our tokenizer.json unchanged through AutoTokenizer."""
    added = {
        str(i): {
            "content": p.piece,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, p in enumerate(proto.pieces)
        if p.type in (CONTROL, UNKNOWN)
    }
    config: dict[str, Any] = {
        "tokenizer_class": TOKENIZER_CLASS,
        **special.as_dict(),
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "sp_model_kwargs": {},
        "added_tokens_decoder": added,
    }
    config.update(special.extra_config)
    return config


def special_tokens_map(special: SpecialTokens) -> dict[str, str]:
    out = {"bos_token": special.bos, "eos_token": special.eos, "unk_token": special.unk, "pad_token": special.pad}
    return {k: v for k, v in out.items() if v is not None}


def write_hf_files(directory: Path, proto: ModelProto, special: SpecialTokens) -> list[str]:
    """Write tokenizer.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json (atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / "tokenizer.model", proto.SerializeToString())
    atomic_write_text(directory / "tokenizer.json", build_fast_tokenizer(proto, special).to_str(pretty=True))
    atomic_write_json(directory / "tokenizer_config.json", tokenizer_config(proto, special))
    atomic_write_json(directory / "special_tokens_map.json", special_tokens_map(special))
    return list(HF_FILES)
