"""`zhtw-pretrain prepare` on the real stories260K model (tied head) and a tiny untied Llama built here.

The extended tokenizer is a real `zhtw-tok build` of stories260K's tokenizer (1,250 pieces: single characters,
multi-character words and pieces with the word-start marker), built once per module in a few seconds.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from zhtw.pretrain.prepare import (
    FORMAT,
    METADATA,
    NotPreparedError,
    OutputExistsError,
    TokenizerMismatchError,
    load_prepare_metadata,
    main,
    prepare_model,
)

VOCAB = 1250  # 512 base + 738 new pieces; rows 1,280 with the default multiple of 64 (30 pad rows)
QUIET = {"log": lambda m: None}
META_KEYS = {
    "format", "base_model", "base_model_files_sha256", "tokenizer_dir", "tokenizer_sha256", "base_vocab_size",
    "tokenizer_size", "embedding_rows", "new_token_ids", "pad_rows", "init", "tie_word_embeddings", "dtype",
    "versions", "seconds",
}  # fmt: skip


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def _embed(w: dict[str, torch.Tensor]) -> torch.Tensor:
    return w["model.embed_tokens.weight"]


def _byte_ids(sp: Any, text: str) -> list[int]:
    """Base ids of a piece spelled by hand: `▁` is its own base piece, every CJK character falls back to bytes."""
    ids = []
    for ch in text:
        if ch == "▁":
            ids.append(sp.piece_to_id("▁"))
        else:
            ids += [sp.piece_to_id(f"<0x{b:02X}>") for b in ch.encode("utf-8")]
    return ids


@pytest.fixture(scope="module")
def stories(shared_data: Path) -> Path:
    return shared_data / "models/stories260K"


@pytest.fixture(scope="module")
def ext_tokenizer(shared_data: Path, stories: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zhtw.tokenizer.build import BuildConfig, build

    out = tmp_path_factory.mktemp("tok") / "stories_zhtw"
    build(
        BuildConfig(
            base=str(stories),
            corpus=[str(shared_data / "corpus/train/msdocs_zhtw.jsonl.gz")],
            output=str(out), vocab_size=VOCAB, sample_mb=0.3, heldout_mb=0.05, character_coverage=0.98,
            progress=False, verify=False,
        ),
        log=lambda m: None,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def prepared(stories: Path, ext_tokenizer: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "stories_prepared"
    prepare_model(stories, ext_tokenizer, out, init="mean-subtoken", **QUIET)
    return out


def _tiny_llama(
    directory: Path, stories: Path, dtype: torch.dtype, tokenizer_model: Path | None = None
) -> Path:
    """A 2-layer untied Llama with stories260K's 512-piece vocabulary (or another tokenizer.model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(directory)
    shutil.copyfile(tokenizer_model or stories / "tokenizer.model", directory / "tokenizer.model")
    return directory


@pytest.mark.shared_data
def test_metadata_and_tied_rows(prepared: Path, stories: Path, ext_tokenizer: Path) -> None:
    import sentencepiece as spm

    meta = load_prepare_metadata(prepared)
    assert set(meta) >= META_KEYS
    tok_meta = json.loads((ext_tokenizer / "zhtw_tokenizer.json").read_text(encoding="utf-8"))
    assert meta["format"] == FORMAT and meta["init"] == "mean-subtoken" and meta["dtype"] == "float32"
    assert meta["base_model"] == str(stories.resolve()) and meta["tokenizer_dir"] == str(
        ext_tokenizer.resolve()
    )
    assert set(meta["base_model_files_sha256"]) >= {"config.json", "model.safetensors", "tokenizer.model"}
    assert meta["tokenizer_sha256"] == meta["inputs"]["tokenizer_files_sha256"]["tokenizer.model"]
    assert (meta["base_vocab_size"], meta["tokenizer_size"], meta["embedding_rows"]) == (512, VOCAB, 1280)
    assert meta["new_token_ids"] == [512, VOCAB] and meta["pad_rows"] == [VOCAB, 1280]
    assert meta["tie_word_embeddings"] is True

    old, new = _embed(_weights(stories)), _embed(_weights(prepared))
    assert new.shape == (1280, 64) and new.dtype == old.dtype
    assert torch.equal(new[:512], old[:512])  # bit-identical
    assert "lm_head.weight" not in _weights(prepared)  # tied: saved once

    sp = spm.SentencePieceProcessor(model_file=str(stories / "tokenizer.model"))
    pieces = tok_meta["added_pieces"]
    checked = 0
    for i, piece in enumerate(pieces):
        if piece in ("的", "使用者", "應用程式", "▁的", "▁中") or i in (0, len(pieces) - 1):
            expected = old[_byte_ids(sp, piece)].mean(dim=0)
            torch.testing.assert_close(new[512 + i], expected, rtol=0, atol=1e-6)
            checked += 1
    assert checked >= 6
    torch.testing.assert_close(new[VOCAB:], old.mean(dim=0).expand(1280 - VOCAB, -1), rtol=0, atol=1e-6)


@pytest.mark.shared_data
def test_loads_with_auto_classes_and_english_is_unchanged(prepared: Path, stories: Path) -> None:
    import sentencepiece as spm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = load_prepare_metadata(prepared)
    tok = AutoTokenizer.from_pretrained(prepared)
    model = AutoModelForCausalLM.from_pretrained(prepared)
    assert len(tok) == meta["tokenizer_size"] == VOCAB
    assert model.config.vocab_size == meta["embedding_rows"] == model.get_input_embeddings().weight.shape[0]
    assert model.get_output_embeddings().weight.shape[0] == meta["embedding_rows"]
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    zh = tok.encode("使用者可以設定應用程式", add_special_tokens=False)
    assert len(zh) > 1 and all(512 <= i < VOCAB for i in zh[1:])  # after the dummy-prefix `▁`

    sp = spm.SentencePieceProcessor(model_file=str(stories / "tokenizer.model"))
    base = AutoModelForCausalLM.from_pretrained(stories)
    prompt = "Once upon a time,"
    ids = tok(prompt, return_tensors="pt").input_ids
    assert ids[0].tolist() == [sp.bos_id(), *sp.encode(prompt)]  # the ids stories260K was trained on
    kw: dict[str, Any] = {"max_new_tokens": 40, "do_sample": False}
    out_base = base.generate(ids, **kw)[0]
    out_new = model.generate(ids, **kw)[0]
    assert torch.equal(out_base, out_new)
    story = sp.decode(out_base[1:].tolist())
    assert story.startswith(prompt) and len(story) > 100
    assert tok.decode(out_new, skip_special_tokens=True) == story


@pytest.mark.shared_data
def test_rerun_is_noop_and_other_inputs_are_refused(
    stories: Path, ext_tokenizer: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prep"
    first = prepare_model(stories, ext_tokenizer, out, **QUIET)
    stamp = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    again = prepare_model(stories, ext_tokenizer, out, **QUIET)
    assert again == first
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == stamp

    with pytest.raises(OutputExistsError, match="--overwrite"):
        prepare_model(stories, ext_tokenizer, out, init="mean", **QUIET)
    meta = prepare_model(stories, ext_tokenizer, out, init="mean", overwrite=True, **QUIET)
    assert meta["init"] == "mean" and load_prepare_metadata(out)["init"] == "mean"
    w, old = _embed(_weights(out)), _embed(_weights(stories))
    assert torch.equal(w[:512], old[:512])
    torch.testing.assert_close(w[512:], old.mean(dim=0).expand(1280 - 512, -1), rtol=0, atol=1e-6)

    (out / "model.safetensors").write_bytes(b"damaged")  # an intact-looking metadata file is not enough
    with pytest.raises(OutputExistsError):
        prepare_model(stories, ext_tokenizer, out, init="mean", **QUIET)


@pytest.mark.shared_data
def test_untied_bf16_without_padding(stories: Path, ext_tokenizer: Path, tmp_path: Path) -> None:
    base = _tiny_llama(tmp_path / "tiny", stories, torch.bfloat16)
    out = tmp_path / "prep"
    meta = prepare_model(base, ext_tokenizer, out, init="mean-subtoken", pad_to_multiple_of=1, **QUIET)
    assert meta["tie_word_embeddings"] is False and meta["dtype"] == "bfloat16"
    assert meta["embedding_rows"] == VOCAB and meta["pad_rows"] is None

    old, new = _weights(base), _weights(out)
    tok_meta = json.loads((ext_tokenizer / "zhtw_tokenizer.json").read_text(encoding="utf-8"))
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(stories / "tokenizer.model"))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert new[name].dtype == torch.bfloat16 and new[name].shape == (VOCAB, 64)
        assert torch.equal(new[name][:512], old[name])
        for i, piece in enumerate(tok_meta["added_pieces"]):
            if piece in ("的", "使用者", "▁中"):
                expected = old[name][_byte_ids(sp, piece)].float().mean(dim=0).to(torch.bfloat16)
                torch.testing.assert_close(new[name][512 + i], expected, rtol=0.01, atol=1e-3)
    assert not torch.equal(new["model.embed_tokens.weight"], new["lm_head.weight"])

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16 and model.config.vocab_size == VOCAB


@pytest.mark.shared_data
def test_default_init_is_distill_through_the_cli(stories: Path, ext_tokenizer: Path, tmp_path: Path) -> None:
    """`prepare` with no --init distils the new rows of an untied model (not the sub-token mean any more)."""
    base = _tiny_llama(tmp_path / "tiny", stories, torch.float32)
    main(["--base", str(base), "--tokenizer", str(ext_tokenizer), "--output", str(tmp_path / "d")])
    main(["--base", str(base), "--tokenizer", str(ext_tokenizer), "--output", str(tmp_path / "m"),
          "--init", "mean-subtoken"])  # fmt: skip
    assert load_prepare_metadata(tmp_path / "d")["init"] == "distill"
    old, dist, mean = _weights(base), _weights(tmp_path / "d"), _weights(tmp_path / "m")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(dist[name][:512], old[name]) and torch.isfinite(dist[name]).all()
        assert not torch.allclose(dist[name][512:VOCAB], mean[name][512:VOCAB])
        assert torch.equal(dist[name][VOCAB:], mean[name][VOCAB:])  # pad rows: the mean base row


@pytest.mark.shared_data
def test_random_init_and_pad_multiple(stories: Path, ext_tokenizer: Path, tmp_path: Path) -> None:
    base = _tiny_llama(tmp_path / "tiny", stories, torch.float32)
    meta = prepare_model(
        base, ext_tokenizer, tmp_path / "prep", init="random", pad_to_multiple_of=128, **QUIET
    )
    assert meta["embedding_rows"] == 1280 and meta["pad_rows"] == [VOCAB, 1280] and meta["init"] == "random"
    old, new = _weights(base), _weights(tmp_path / "prep")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(new[name][:512], old[name])
        fresh = new[name][512:]
        assert (
            0.015 < fresh.std().item() < 0.025 and abs(fresh.mean().item()) < 0.002
        )  # initializer_range 0.02


@pytest.mark.shared_data
def test_tokenizer_of_another_base_is_refused(
    stories: Path, ext_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sentencepiece as spm

    lines = [f"The {a} {b} walked to the {c} and said hello number {n}." for n in range(40)
             for a, b, c in [("small", "cat", "park"), ("old", "man", "sea"), ("red", "bird", "tree")]]  # fmt: skip
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=512, byte_fallback=True,
        hard_vocab_limit=False, minloglevel=2,
    )  # fmt: skip
    other = tmp_path / "other.model"
    other.write_bytes(buf.getvalue())
    base = _tiny_llama(tmp_path / "tiny", stories, torch.float32, tokenizer_model=other)
    out = tmp_path / "prep"
    with pytest.raises(TokenizerMismatchError, match=r"zhtw-tok build --base .*tiny"):
        prepare_model(base, ext_tokenizer, out, **QUIET)
    assert not out.exists()

    assert main(["--base", str(base), "--tokenizer", str(ext_tokenizer), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "was not built on the tokenizer of" in err and "zhtw-tok build --base" in err

    with pytest.raises(TokenizerMismatchError, match="zhtw-tok build"):
        prepare_model(stories, stories, out, **QUIET)  # a model directory is not a tokenizer build


@pytest.mark.shared_data
def test_not_prepared_directory_is_refused(stories: Path, tmp_path: Path) -> None:
    with pytest.raises(NotPreparedError, match="zhtw-pretrain prepare"):
        load_prepare_metadata(stories)
    (tmp_path / METADATA).write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(NotPreparedError, match="format"):
        load_prepare_metadata(tmp_path)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--base",
        "--tokenizer",
        "--output",
        "--init",
        "--pad-to-multiple-of",
        "--dtype",
        "--overwrite",
    ):
        assert option in out
