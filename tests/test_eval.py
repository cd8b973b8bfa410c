"""`zhtw-pretrain eval`: bits per character against hand computations, tokenizer independence, KL, refusals.

Tiny real components built here: character-level and pair-level `tokenizers` WordLevel tokenizers wrapped as
Hugging Face fast tokenizers, and 2-layer Llama models (hidden 64).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from zhtw.pretrain.evaluate import (
    EvalSettings,
    bits_per_character,
    english_kl,
    load_model,
    main,
)

ALPHABET = "abcd"
TEXTS = ["abcdabca" * 5, "ddccbbaa" * 3, "abab"]
QUIET = EvalSettings(generation_chars=0, progress=False)


def _tokenizer(directory: Path, pairs: bool, filler: int = 0) -> Path:
    """A WordLevel tokenizer over single characters (or pairs of characters) of ALPHABET, saved to directory."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    units = [a + b for a in ALPHABET for b in ALPHABET] if pairs else list(ALPHABET)
    vocab = {t: i for i, t in enumerate(["<s>", "</s>", *units, *(f"<f{i}>" for i in range(filler))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="</s>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(".." if pairs else "."), behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    directory.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(directory)
    return directory


def _llama(directory: Path, vocab: int, zero: bool = False, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
        max_position_embeddings=64,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    if zero:
        with torch.no_grad():
            model.lm_head.weight.zero_()  # every logit 0: the uniform distribution over all rows
    model.save_pretrained(directory)
    return directory


@pytest.fixture
def char_model(tmp_path: Path) -> Path:
    d = _tokenizer(tmp_path / "char", pairs=False)
    return _llama(d, vocab=2 + len(ALPHABET))


def _hand_bits(model: torch.nn.Module, seq: list[int], start_of: dict[int, int]) -> float:
    """NLL in bits of seq[1:], each target j predicted from seq[start_of[j]:j] by a separate forward pass."""
    total = 0.0
    with torch.no_grad():
        for j in range(1, len(seq)):
            ctx = torch.tensor([seq[start_of[j] : j]])
            logp = torch.log_softmax(model(input_ids=ctx).logits[0, -1], dim=-1)
            total -= float(logp[seq[j]])
    return total / math.log(2)


def test_bits_per_char_matches_hand_computation(char_model: Path) -> None:
    model, tok = load_model(char_model, "cpu")
    seqs = [[tok.bos_token_id, *tok.encode(t, add_special_tokens=False)] for t in TEXTS]
    chars = sum(map(len, TEXTS))

    full = bits_per_character(model, tok, TEXTS, EvalSettings(context=64, stride=32, progress=False))
    expected = sum(_hand_bits(model, s, dict.fromkeys(range(len(s)), 0)) for s in seqs) / chars
    assert full["bits_per_char"] == pytest.approx(expected, rel=1e-5)
    assert full["tokens"] == chars and full["chars_per_token"] == 1.0

    # windows of 8 tokens advancing by 3: target j is scored in the first window that ends after it
    short = bits_per_character(model, tok, TEXTS, EvalSettings(context=8, stride=3, progress=False))
    hand = 0.0
    for s in seqs:
        start_of, end, first = {}, min(8, len(s)), 1
        while True:
            start_of.update({j: end - 8 if end > 8 else 0 for j in range(first, end)})
            if end >= len(s):
                break
            first, end = end, min(end + 3, len(s))
        assert sorted(start_of) == list(range(1, len(s)))
        hand += _hand_bits(model, s, start_of)
    assert short["bits_per_char"] == pytest.approx(hand / chars, rel=1e-5)
    assert short["bits_per_char"] != pytest.approx(full["bits_per_char"], rel=1e-4)  # the windows mattered


def test_uniform_model_scores_the_same_under_two_tokenizations(tmp_path: Path) -> None:
    """A uniform model over V = 6 characters-with-specials and one over 36 = 6² pairs: log2(6) bits per char."""
    char = _llama(_tokenizer(tmp_path / "char", pairs=False), vocab=6, zero=True)
    pair = _llama(_tokenizer(tmp_path / "pair", pairs=True, filler=36 - 18), vocab=36, zero=True)
    texts = ["abcdabcd" * 4, "ddaabbcc"]
    a = bits_per_character(*load_model(char, "cpu"), texts, QUIET)
    b = bits_per_character(*load_model(pair, "cpu"), texts, QUIET)
    assert (a["chars_per_token"], b["chars_per_token"]) == (1.0, 2.0)
    assert a["bits_per_char"] == pytest.approx(math.log2(6), rel=1e-6)
    assert b["bits_per_char"] == pytest.approx(a["bits_per_char"], rel=1e-6)


def test_reference_kl_is_the_mass_on_extra_rows_and_skips_other_tokenisations(
    char_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    ref = load_model(char_model, "cpu")
    same = english_kl(ref, ref, TEXTS, QUIET)
    assert same["compared_documents"] == 3 and abs(same["kl_nats_per_token"]) < 1e-6

    # the same model with 4 extra output rows: old logits unchanged, so KL = E[-log(1 - mass on new rows)]
    bigger = AutoModelForCausalLM.from_pretrained(char_model)
    bigger.resize_token_embeddings(10, mean_resizing=False)
    with torch.no_grad():
        bigger.lm_head.weight[6:].normal_(0, 0.5)
    ext = english_kl(ref, (bigger.eval(), ref[1]), TEXTS, QUIET)
    masses = []
    with torch.no_grad():
        for t in TEXTS:
            ids = torch.tensor([[0, *ref[1].encode(t, add_special_tokens=False)]])
            q = torch.softmax(bigger(input_ids=ids).logits[0, :-1], dim=-1)
            masses += q[:, 6:].sum(-1).tolist()
    assert ext["kl_nats_per_token"] == pytest.approx(
        sum(-math.log1p(-m) for m in masses) / len(masses), rel=1e-4
    )
    assert ext["new_token_mass"] == pytest.approx(sum(masses) / len(masses), rel=1e-4)

    pair = load_model(_llama(_tokenizer(tmp_path / "pair", pairs=True), vocab=18), "cpu")
    other = english_kl(ref, pair, TEXTS, QUIET)
    assert other["compared_documents"] == 0 and other["skipped_documents"] == {"tokenised differently": 3}
    assert other["kl_nats_per_token"] is None


def _text_file(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def test_cli_writes_json_and_markdown(
    char_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _text_file(tmp_path / "abcd.jsonl", TEXTS)
    out = tmp_path / "eval"
    main([str(char_model), "--text", str(text), "--output", str(out), "--reference", str(char_model),
          "--generation-chars", "10", "--no-progress"])  # fmt: skip
    result = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    r = result["models"][str(char_model)]
    assert r["files"]["abcd"]["documents"] == 3 and r["files"]["abcd"]["chars"] == sum(map(len, TEXTS))
    assert r["files"]["abcd"]["reference_kl"]["compared_documents"] == 3
    assert (
        r["generation"]["chars"] == 10 * r["generation"]["prompts"]
        and r["generation"]["chars_per_second"] > 0
    )
    table = (out / "eval.md").read_text(encoding="utf-8")
    assert "abcd bits/char" in table and table in capsys.readouterr().out


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()  # drop what building the models printed
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_cli_refuses_a_tokenizer_that_does_not_belong(
    char_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = str(_text_file(tmp_path / "t.jsonl", TEXTS))
    # the pair tokenizer (18 tokens) in a model directory with 6 rows: an extended tokenizer on the base model
    small = _llama(_tokenizer(tmp_path / "small", pairs=True), vocab=6)
    err = _refused([str(small), "--text", text, "--output", str(tmp_path / "o1")], capsys)
    assert "18 tokens but the model only 6 embedding rows" in err and str(small) in err
    # a model with 1,030 rows and the 6-token tokenizer: an extended model with its base tokenizer
    big = _llama(_tokenizer(tmp_path / "big", pairs=False), vocab=1030)
    err = _refused([str(big), "--text", text, "--output", str(tmp_path / "o2")], capsys)
    assert "1,030 embedding rows but the tokenizer only 6 tokens" in err
    # a prepared model whose recorded tokenizer is not the one in its directory
    (char_model / "zhtw_prepare.json").write_text(json.dumps({"tokenizer_size": 5}), encoding="utf-8")
    err = _refused([str(char_model), "--text", text, "--output", str(tmp_path / "o3")], capsys)
    assert "records a tokenizer of 5 tokens" in err
    assert not any((tmp_path / n).exists() for n in ("o1", "o2", "o3"))


def test_cli_refuses_bad_texts_and_overlapping_output(
    char_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(
        [str(char_model), "--text", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")], capsys
    )
    assert "missing.jsonl does not exist" in err
    empty = _text_file(tmp_path / "empty.jsonl", ["", "  "])
    err = _refused([str(char_model), "--text", str(empty), "--output", str(tmp_path / "o")], capsys)
    assert "holds no non-empty document" in err
    text = str(_text_file(tmp_path / "t.jsonl", TEXTS))
    err = _refused([str(char_model), "--text", text, "--output", str(char_model / "eval")], capsys)
    assert "eval" in err
    assert not (char_model / "eval").exists()


@pytest.mark.shared_data
def test_byte_level_tokenizer_without_bos(shared_data: Path, tmp_path: Path) -> None:
    """Qwen2's byte-level BPE has no BOS: documents start with its EOS, and the hand computation still holds."""
    import shutil

    from transformers import AutoTokenizer

    d = tmp_path / "qwen2_tiny"
    shutil.copytree(shared_data / "tokenizers/qwen2", d)
    n = len(AutoTokenizer.from_pretrained(d))
    _llama(d, vocab=n)
    model, tok = load_model(d, "cpu")
    assert tok.bos_token_id is None and tok.eos_token_id is not None
    texts = ["臺灣位於東亞，是一個島嶼。", "def f(x):\n    return x  # 註解"]
    got = bits_per_character(model, tok, texts, QUIET)
    seqs = [[tok.eos_token_id, *tok.encode(t, add_special_tokens=False)] for t in texts]
    hand = sum(_hand_bits(model, s, dict.fromkeys(range(len(s)), 0)) for s in seqs)
    assert got["bits_per_char"] == pytest.approx(hand / sum(map(len, texts)), rel=1e-5)
    assert got["chars_per_token"] > 1.0  # byte-level merges: more than one character per token here
