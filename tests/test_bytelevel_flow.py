"""Byte-level BPE end to end: the four stages on a tiny random Llama with the real Llama-3 vocabulary, and
llama.cpp (built by scripts/build_llamacpp.sh, when present) tokenising the exported GGUF like the HF tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("gguf")

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "臺灣的中央研究院成立於1928年，院址位於臺北市南港區。",
    "行政院公報：本案依《行政程序法》第一百五十四條規定辦理，並自公布日施行。",
    "def main(argv):\n    return 0  # English and code stay as the base tokenises them\n",
    "Hello, world! 你好，世界。  Two  spaces and\ttabs.",
    "賈寶玉、林黛玉與薛寶釵。「你這會子說什麼？」",
]
NEW_TOKENS = 192


def _tiny_llama3(directory: Path, llama3: Path) -> None:
    """A random Llama (2 layers, hidden 64) with Llama-3's 128,256-row vocabulary and its tokenizer files."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
        bos_token_id=128000, eos_token_id=128001,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(llama3 / name, directory / name)


@pytest.fixture(scope="module")
def flow(tmp_path_factory, shared_data):
    """corpus -> zhtw-tok build (Llama-3, +192 merges) -> prepare -> train 8 steps -> export (HF + GGUF f16)."""
    from zhtw.corpus.cli import main as corpus_main
    from zhtw.pretrain.export import main as export_main
    from zhtw.pretrain.prepare import prepare_model
    from zhtw.pretrain.train import main as train_main
    from zhtw.tokenizer.cli import main as tok_main

    tmp = tmp_path_factory.mktemp("bytelevel_flow")
    llama3 = shared_data / "tokenizers/llama3"
    sample = REPO / "corpus/sample/sample.warc.wet.gz"
    assert corpus_main(["run", str(sample), "--output", str(tmp / "corpus"), "--workers", "1", "--quiet"]) == 0
    assert tok_main(["build", "--base", str(llama3), "--corpus", str(tmp / "corpus"), "--output", str(tmp / "tok"),
                     "--new-tokens", str(NEW_TOKENS), "--quiet"]) == 0  # fmt: skip
    _tiny_llama3(tmp / "base", llama3)
    prepare_model(tmp / "base", tmp / "tok", tmp / "prepared", log=lambda _: None)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main([str(REPO / "configs/tiny-cpu.yaml"), "--model_path", str(tmp / "prepared"),
                    "--data_files", str(tmp / "corpus"), "--output_dir", str(tmp / "train"), "--block_size", "64",
                    "--max_steps", "8", "--save_steps", "8", "--eval_steps", "4", "--logging_steps", "4",
                    "--disable_tqdm", "true"]) == 0  # fmt: skip
        export_main(["--model", str(tmp / "prepared"), "--adapter", str(tmp / "train"), "--output",
                     str(tmp / "export"), "--dtype", "fp32", "--gguf", "f16"])  # fmt: skip
    finally:
        torch.set_num_threads(old)
    return tmp


@pytest.mark.slow
@pytest.mark.shared_data
def test_four_stages_on_a_llama3_vocabulary(flow, shared_data):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok_meta = json.loads((flow / "tok/zhtw_tokenizer.json").read_text())
    assert tok_meta["backend"] == "bytelevel-bpe" and tok_meta["num_added"] == NEW_TOKENS
    assert tok_meta["base_vocab_size"] == 128256 and tok_meta["vocab_size"] == 128256 + NEW_TOKENS
    prep = json.loads((flow / "prepared/zhtw_prepare.json").read_text())
    assert prep["new_token_ids"] == [128256, 128256 + NEW_TOKENS] and prep["embedding_rows"] % 64 == 0

    base = AutoTokenizer.from_pretrained(shared_data / "tokenizers/llama3")
    out = flow / "export"
    tok = AutoTokenizer.from_pretrained(out)
    english = TEXTS[2]
    assert tok(english)["input_ids"] == base(english)["input_ids"]  # English and code untouched
    zh = sum(len(tok(t)["input_ids"]) for t in TEXTS[:2])
    assert zh < sum(len(base(t)["input_ids"]) for t in TEXTS[:2])  # the new merges fire on Chinese
    assert tok(TEXTS[0])["input_ids"][0] == 128000  # <|begin_of_text|> kept

    meta = json.loads((out / "zhtw_export.json").read_text())
    assert meta["verify"]["passed"]
    card = (out / "README.md").read_text()
    assert "byte-level BPE (llama-bpe pre-tokenizer): 128,256 base ids" in card
    assert f"+ {NEW_TOKENS} zh-TW tokens from {NEW_TOKENS} continued merges" in card
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == prep["embedding_rows"] >= len(tok)
    ids = tok(TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == ids["input_ids"].shape[1] + 5


@pytest.mark.slow
@pytest.mark.shared_data
def test_gguf_vocabulary_is_gpt2_with_the_base_pre_tokenizer(flow):
    from gguf import GGUFReader

    out = flow / "export"
    reader = GGUFReader(str(out / "model-f16.gguf"))
    field = lambda key: reader.get_field(key).contents()  # noqa: E731
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "llama-bpe"
    tokens = field("tokenizer.ggml.tokens")
    data = json.loads((out / "tokenizer.json").read_text())
    assert len(tokens) == json.loads((out / "config.json").read_text())["vocab_size"]
    for token, i in list(data["model"]["vocab"].items())[-NEW_TOKENS:]:
        assert tokens[i] == token
    merges = field("tokenizer.ggml.merges")
    assert len(merges) == len(data["model"]["merges"])
    assert field("tokenizer.ggml.bos_token_id") == 128000


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.llamacpp
def test_llama_cpp_tokenises_the_gguf_like_the_hf_tokenizer(flow, shared_data, llama_tokenize):
    from transformers import AutoTokenizer

    from zhtw.tokenizer.textfiles import iter_path_texts

    out = flow / "export"
    tok = AutoTokenizer.from_pretrained(out)
    eval_docs = [t[:400] for t, _ in zip(iter_path_texts(shared_data / "corpus/eval/wiki_drcd.jsonl.gz"), range(40))]
    for text in TEXTS + eval_docs:
        assert llama_tokenize(out / "model-f16.gguf", text) == tok(text)["input_ids"], text
