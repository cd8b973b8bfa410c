"""Tokenizer stage on the real bases in ../shared/data: Llama-2 (32,000 pieces) and stories260K (512 pieces)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import sentencepiece as spm

from zhtw.tokenizer.build import METADATA, BuildConfig, build
from zhtw.tokenizer.hf import build_fast_tokenizer
from zhtw.tokenizer.spmodel import load_base
from zhtw.tokenizer.verify import stdlib_texts, verify_dir

pytestmark = pytest.mark.shared_data


def _eval_docs(shared: Path, name: str, n: int) -> list[str]:
    out = []
    with gzip.open(shared / "corpus/eval" / name, "rt", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if len(out) >= n:
                break
    return out


def test_llama2_fast_tokenizer_equals_sentencepiece(shared_data: Path) -> None:
    """The deliberately built tokenizer.json reproduces Llama-2's sentencepiece ids, runs of spaces included."""
    model = shared_data / "tokenizers/llama2/tokenizer.model"
    base = load_base(model)
    tok = build_fast_tokenizer(base.proto, base.special)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    texts = stdlib_texts(20) + _eval_docs(shared_data, "wiki_drcd.jsonl.gz", 50)
    texts += [" " * n + "leading" + " " * m + "x" for n in range(20) for m in range(0, 20, 4)]
    got = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert got == [sp.encode(t) for t in texts]


@pytest.mark.slow
def test_llama2_extends_cleanly(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "llama2_zhtw"
    result = build(
        BuildConfig(
            base=str(shared_data / "tokenizers/llama2/tokenizer.model"),
            corpus=[str(shared_data / "corpus/train/hongloumeng.jsonl.gz")],
            output=str(out), vocab_size=33024, sample_mb=3, heldout_mb=0.3, progress=False,
        ),
        log=lambda m: None,
    )
    meta = result.metadata
    assert meta["vocab_size"] == 33024 and meta["num_added"] == 1024
    assert meta["base"]["sha256"] == load_base(shared_data / "tokenizers/llama2/tokenizer.model").sha256
    assert meta["verify"]["english_texts"] > 30
    extra = _eval_docs(shared_data, "wiki_drcd.jsonl.gz", 40) + _eval_docs(shared_data, "legal_mojlaw.jsonl.gz", 5)
    report = verify_dir(out, stdlib_texts(10) + extra)
    assert report["llama_tokenizer_checked"]
    new = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    old = spm.SentencePieceProcessor(model_file=str(shared_data / "tokenizers/llama2/tokenizer.model"))
    zh = "".join(extra)
    assert len(new.encode(zh)) < 0.9 * len(old.encode(zh))
    assert json.loads((out / METADATA).read_text(encoding="utf-8"))["files"]


@pytest.mark.slow
def test_stories260k_extends_cleanly(shared_data: Path, tmp_path: Path) -> None:
    """A 512-piece base (whose normalizer also collapses runs of spaces) extends to 1,024."""
    from transformers import AutoTokenizer

    base_model = shared_data / "models/stories260K/tokenizer.model"
    out = tmp_path / "stories_zhtw"
    build(
        BuildConfig(
            base=str(base_model),
            corpus=[str(shared_data / "corpus/train/hongloumeng.jsonl.gz")],
            output=str(out), vocab_size=1024, sample_mb=1, heldout_mb=0.2, progress=False,
        ),
        log=lambda m: None,
    )
    report = verify_dir(out, _eval_docs(shared_data, "wiki_drcd.jsonl.gz", 20) + ["Once upon a time,  there   was"])
    assert report["vocab_size"] == 1024 and report["added"] == 512
    assert not report["llama_tokenizer_checked"]  # LlamaTokenizer cannot express remove_extra_whitespaces
    tok = AutoTokenizer.from_pretrained(str(out))
    sp = spm.SentencePieceProcessor(model_file=str(base_model))
    story = "Once upon a time, there was a little girl named Lily."
    assert tok.encode(story, add_special_tokens=False) == sp.encode(story)
    assert tok(story)["input_ids"][0] == sp.bos_id()


def test_chinese_llama2_base_refused_up_front(shared_data: Path, tmp_path: Path, capsys) -> None:
    """Chinese-LLaMA-2's 23k score-0 pieces: one line naming the file and what is supported; no output left."""
    from zhtw.tokenizer.cli import main

    out = tmp_path / "out"
    rc = main(["build", "--base", str(shared_data / "tokenizers/chinese-llama2"), "--corpus",
               str(shared_data / "corpus/train/hongloumeng.jsonl.gz"), "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "chinese-llama2/tokenizer.model is not in merge order" in err and "Supported:" in err
    assert not out.exists()
