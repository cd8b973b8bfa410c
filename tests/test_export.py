"""`zhtw-export`: merge equivalence, sharding, refusals, the model card and GGUF read-back.

Fixtures are built in-test from the bundled corpus sample: a small English SentencePiece BPE base and a tiny
random Llama (the demo's helpers), an extended tokenizer from `zhtw-tok build`, `zhtw-pretrain prepare`, and
adapters made directly with peft (LoRA on every linear layer + trainable new token rows + norms, weights
perturbed so the merge is not trivial) or by a short real `zhtw-pretrain train` run. Torch runs on one
thread (two OpenMP threads spin against each other on two shared cores).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("gguf")

from zhtw.pretrain.demo import english_texts, make_tiny_llama, train_base_tokenizer  # noqa: E402
from zhtw.pretrain.export import (  # noqa: E402
    AdapterMismatchError,
    VerificationError,
    export,
    main,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "corpus" / "sample" / "sample.warc.wet.gz"
TEXTS = [
    "臺灣位於東亞，首都是臺北市。",
    "Once upon a time, a little fox found a red kite.",
    "政府公告：本法自公布日施行。",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """corpus sample -> base (384-piece BPE + tiny Llamas, tied and untied) -> 640-piece tokenizer -> prepared."""
    from zhtw.corpus.cli import main as corpus_main
    from zhtw.pretrain.prepare import prepare_model
    from zhtw.tokenizer.cli import main as tok_main

    root = tmp_path_factory.mktemp("export")
    assert corpus_main(["run", str(SAMPLE), "--output", str(root / "corpus"), "--workers", "1", "--quiet"]) == 0
    base = root / "base"
    train_base_tokenizer(base, english_texts(2000))
    make_tiny_llama(base, 384, tied=False, seed=0)
    base_tied = root / "base_tied"
    base_tied.mkdir()
    shutil.copy(base / "tokenizer.model", base_tied / "tokenizer.model")
    make_tiny_llama(base_tied, 384, tied=True, seed=1)
    for name, size in (("tok", 640), ("tok576", 576)):
        code = tok_main(["build", "--base", str(base), "--corpus", str(root / "corpus"), "--output",
                         str(root / name), "--vocab-size", str(size), "--quiet", "--workers", "1"])  # fmt: skip
        assert code in (0, None)
    prepare_model(str(base), str(root / "tok"), str(root / "prepared"), log=_quiet)
    prepare_model(str(base_tied), str(root / "tok"), str(root / "prepared_tied"), log=_quiet)
    prepare_model(str(base), str(root / "tok576"), str(root / "prepared576"), log=_quiet)
    return root


def make_adapter(prepared: Path, out: Path, *, seed: int = 0) -> Path:
    """A peft adapter like the trainer's: LoRA on all linear layers, new rows, norms; perturbed weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    meta = json.loads((prepared / "zhtw_prepare.json").read_text())
    ids = list(range(*meta["new_token_ids"]))
    model = AutoModelForCausalLM.from_pretrained(prepared)
    tied = bool(model.config.tie_word_embeddings)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules="all-linear",
        trainable_token_indices=ids if tied else {"embed_tokens": ids, "lm_head": ids},
        modules_to_save=["input_layernorm", "post_attention_layernorm", "norm"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * (0.05 if "lora_" in name else 0.02))
    model.save_pretrained(out)
    return out


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _ids(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return torch.tensor([tok(" ".join(TEXTS))["input_ids"]])


@pytest.mark.parametrize("variant", ["prepared", "prepared_tied"])
def test_merge_equals_peft_in_float32(tiny, tmp_path, variant):
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    prepared = tiny / variant
    adapter = make_adapter(prepared, tmp_path / "adapter")
    meta = export(prepared, adapter, tmp_path / "out", dtype="fp32", verify="fp32", log=_quiet)
    out = tmp_path / "out"
    assert meta["verify"]["passed"] and meta["verify"]["max_abs_diff"] < 1e-4
    assert meta["merge"]["merged"]["lora"] == 2 * 7 and meta["merge"]["merged"]["rows"] > 0

    ids = _ids(out)
    merged = AutoModelForCausalLM.from_pretrained(out)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(prepared), adapter)
    plain = AutoModelForCausalLM.from_pretrained(prepared)
    got, want, before = _logits(merged, ids), _logits(reference, ids), _logits(plain, ids)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - before).abs().max() > 1e-2  # the adapter changed the model
    # peft's own merge gives the same weights
    peft_merged = reference.merge_and_unload().state_dict()
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(tensor, peft_merged[name], rtol=1e-5, atol=1e-6, msg=name)

    config = json.loads((out / "config.json").read_text())
    assert config["attn_implementation"] == "sdpa" and config["dtype"] == "float32"
    assert merged.config._attn_implementation == "sdpa"
    assert config["tie_word_embeddings"] == (variant == "prepared_tied") == merged.config.tie_word_embeddings
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) != config["tie_word_embeddings"]  # noqa: SIM118
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                 "README.md", "zhtw_export.json"):  # fmt: skip
        assert (out / name).is_file(), name


def test_bf16_shards_load_and_match(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    adapter = make_adapter(tiny / "prepared", tmp_path / "adapter")
    meta = export(
        tiny / "prepared", adapter, tmp_path / "out", dtype="bf16", max_shard_size="100KB", log=_quiet
    )
    files = meta["merge"]["files"]
    assert len(files) > 1 and all((tmp_path / "out" / f).is_file() for f in files)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(files)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto")
    assert model.dtype == torch.bfloat16
    assert meta["verify"]["passed"] and meta["verify"]["top1_agreement"] > 0.95
    assert meta["peak_rss_mb"]["merge"] > 0


def test_refuses_adapter_of_another_vocabulary(tiny, tmp_path, capsys):
    adapter = make_adapter(tiny / "prepared576", tmp_path / "adapter576")
    with pytest.raises(AdapterMismatchError, match=r"vocabulary size.*576.*640"):
        export(tiny / "prepared", adapter, tmp_path / "out", log=_quiet)
    capsys.readouterr()  # drop the progress bars of building the adapter
    assert main(["--model", str(tiny / "prepared"), "--adapter", str(adapter), "--output", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zhtw-export: error: ") and err.count("\n") == 1
    assert "prepared576" in err and "does not fit the model" in err and str(tiny / "prepared") in err
    assert not (tmp_path / "out").exists()


def test_refuses_adapter_of_another_architecture(tiny, tmp_path):
    adapter = make_adapter(tiny / "prepared_tied", tmp_path / "adapter")
    with pytest.raises(AdapterMismatchError, match=r"architecture.*tied input/output embeddings.*untied"):
        export(tiny / "prepared", adapter, tmp_path / "out", log=_quiet)
    # the recorded base is gone (moved adapter): the shape check still names both sides
    wide = tmp_path / "wide"
    make_tiny_llama(wide, 384, tied=False)
    cfg = json.loads((wide / "config.json").read_text())
    cfg.update(hidden_size=128, intermediate_size=256)
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k != "architectures"})).save_pretrained(
        wide
    )
    shutil.copy(tiny / "base" / "tokenizer.model", wide / "tokenizer.model")
    from zhtw.pretrain.prepare import prepare_model

    prepare_model(str(wide), str(tiny / "tok"), str(tmp_path / "prepared_wide"), log=_quiet)
    adapter_wide = make_adapter(tmp_path / "prepared_wide", tmp_path / "adapter_wide")
    shutil.rmtree(tmp_path / "prepared_wide")
    with pytest.raises(AdapterMismatchError, match=r"shape of model\.layers\.0\..*\[.*128.*\].*hidden 64"):
        export(tiny / "prepared", adapter_wide, tmp_path / "out", log=_quiet)


def test_nan_adapter_fails_the_reload_check(tiny, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    adapter = make_adapter(tiny / "prepared", tmp_path / "adapter")
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    key = next(k for k in weights if "lora_B" in k)
    weights[key][0, 0] = float("nan")
    save_file(weights, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(VerificationError, match="NaN"):
        export(tiny / "prepared", adapter, tmp_path / "out", dtype="fp32", log=_quiet)
    assert not (tmp_path / "out" / "zhtw_export.json").exists()  # never looks finished
    assert main(["--model", str(tiny / "prepared"), "--adapter", str(adapter), "--output", str(tmp_path / "o2")]) == 1
    assert "NaN" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------
# a real training run: model card and GGUF


@pytest.fixture(scope="module")
def trained(tiny):
    """12 steps of the real trainer (tiny-cpu.yaml with overrides) on the prepared untied model."""
    from zhtw.pretrain.train import main as train_main

    out = tiny / "run"
    assert train_main([str(REPO / "configs/tiny-cpu.yaml"), "--model_path", str(tiny / "prepared"),
                "--data_files", str(tiny / "corpus" / "shards"), "--data_cache_dir", str(tiny / "cache"),
                "--output_dir", str(out), "--block_size", "64", "--max_steps", "12", "--save_steps", "6",
                "--eval_steps", "6", "--logging_steps", "2", "--eval_fraction", "0.05", "--eval_max_docs", "10",
                "--trainable_norms", "false", "--disable_tqdm", "true", "--report_to", "tensorboard"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def exported(tiny, trained):
    from zhtw.tokenizer.evaluate import evaluate, write_report

    shards = [str(p) for p in (tiny / "corpus" / "shards").glob("*.jsonl.gz")]
    write_report(evaluate([str(tiny / "base"), str(tiny / "tok")], shards), tiny / "tok_eval")
    out = tiny / "exported"
    meta = export(tiny / "prepared", trained / "checkpoint-12", out, dtype="float32", gguf="f16",
                  tokenizer_report=tiny / "tok_eval" / "eval.json", license="apache-2.0",
                  base_model_id="example/tiny-llama", datasets=["example/zhtw-news", "example/wiki"],
                  log=_quiet)  # fmt: skip
    return out, meta


def test_model_card_has_the_fields_and_the_run_numbers(exported, trained):
    from huggingface_hub import ModelCard

    out, meta = exported
    summary = json.loads((trained / "training_summary.json").read_text())
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == "example/tiny-llama" and data["library_name"] == "transformers"
    assert data["license"] == "apache-2.0" and "zh" in data["language"] and "gguf" in data["tags"]
    assert data["datasets"] == ["example/zhtw-news", "example/wiki"]  # as given, never file names
    assert data["model_name"] == "tiny-llama-zhtw"  # not in the base's namespace (example/...)
    text = card.text
    for heading in ("## Vocabulary extension", "### Training hyperparameters", "### Training results",
                    "## Framework versions", "## How to load", "## Export check"):  # fmt: skip
        assert heading in text, heading
    assert "| pieces added | 256 |" in text
    # compression from the tokenizer report, both numbers
    row = next(r for r in json.loads((out.parent / "tok_eval" / "eval.json").read_text())["rows"]
               if r["tokenizer"] == "tok")  # fmt: skip
    assert f"{row['chars_per_token']:.3f}" in text and meta["model_card"]["compression"]
    assert f"| learning rate | {summary['training_args']['learning_rate']:.4g} |" in text
    for h in summary["log_history"]:
        if "loss" in h:
            assert f"| {h['step']} | {h['loss']:.4g} |" in text
    assert f"{summary['final']['eval_loss']:.4g}" in text
    assert f"peft: {summary['versions']['peft']}" in text
    assert "![training and evaluation loss](loss.png)" in text and (out / "loss.png").stat().st_size > 1000


def test_model_card_measures_compression_without_a_report(tiny, trained, tmp_path):
    from huggingface_hub import ModelCard

    out = tmp_path / "out"
    meta = export(tiny / "prepared", trained / "adapter", out, dtype="fp32", log=_quiet)
    data = ModelCard.load(out / "README.md").data.to_dict()
    # no --base-model-id and a local base without a hub _name_or_path: no base_model, never the folder name
    assert "base_model" not in data and "datasets" not in data and data["model_name"] == "base-zhtw"
    comp = meta["model_card"]["compression"]
    assert comp and comp[0]["after"] > comp[0]["before"] > 0
    assert "measured on" in (out / "README.md").read_text()


def test_gguf_read_back(exported, tiny):
    import numpy as np
    from gguf import GGUFReader, TokenType
    from safetensors.torch import load_file
    from sentencepiece import sentencepiece_model_pb2 as pb

    from zhtw.pretrain.export.gguf_writer import permute_qk

    out, meta = exported
    reader = GGUFReader(str(out / meta["gguf"]["file"]))
    field = lambda k: reader.get_field(k).contents()  # noqa: E731
    assert field("general.architecture") == "llama" and field("tokenizer.ggml.model") == "llama"
    assert field("llama.block_count") == 2 and field("llama.attention.head_count_kv") == 2
    proto = pb.ModelProto()
    proto.ParseFromString((out / "tokenizer.model").read_bytes())
    assert field("tokenizer.ggml.tokens") == [p.piece for p in proto.pieces]
    assert np.allclose(field("tokenizer.ggml.scores"), [p.score for p in proto.pieces])
    types = field("tokenizer.ggml.token_type")
    assert types.count(int(TokenType.BYTE)) == 256 and types[0] == int(TokenType.UNKNOWN)
    assert types[1] == types[2] == int(TokenType.CONTROL)
    assert (field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")) == (1, 2)
    assert field("general.name") == "tiny-llama-zhtw" and field("general.basename") == "tiny-llama"
    assert field("general.license") == "apache-2.0" and field("general.size_label").endswith("K")
    assert field("general.base_model.count") == 1 and field("general.base_model.0.organization") == "example"
    assert field("general.base_model.0.repo_url") == "https://huggingface.co/example/tiny-llama"
    assert field("general.source.repo_url") == "https://huggingface.co/example/tiny-llama"
    assert field("general.dataset.count") == 2 and field("general.dataset.0.name") == "example/zhtw-news"
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 3 + 2 * 9 and "output.weight" in tensors  # untied head
    weights = load_file(str(out / "model.safetensors"))
    q = weights["model.layers.1.self_attn.q_proj.weight"].numpy()
    got = np.asarray(tensors["blk.1.attn_q.weight"].data, dtype=np.float32).reshape(q.shape)
    np.testing.assert_allclose(got, permute_qk(q, 4), atol=2e-3, rtol=2e-3)  # f16, llama.cpp's row order
    emb = np.asarray(tensors["token_embd.weight"].data, dtype=np.float32).reshape(640, 64)
    np.testing.assert_allclose(emb, weights["model.embed_tokens.weight"].numpy(), atol=2e-3, rtol=2e-3)


def test_gguf_q8_0_and_tied_head(tiny, tmp_path):
    from gguf import GGUFReader

    adapter = make_adapter(tiny / "prepared_tied", tmp_path / "adapter")
    meta = export(tiny / "prepared_tied", adapter, tmp_path / "out", gguf="q8_0", log=_quiet)
    assert meta["gguf"]["tensor_types"] == {"F32": 5, "Q8_0": 2 * 7 + 1}
    names = {t.name for t in GGUFReader(str(tmp_path / "out" / "model-q8_0.gguf")).tensors}
    assert "output.weight" not in names and "token_embd.weight" in names  # llama.cpp reuses the embedding


@pytest.mark.slow
@pytest.mark.llamacpp
def test_llama_cpp_binary_tokenises_the_sentencepiece_gguf_like_hf(exported, tiny, llama_tokenize):
    """llama.cpp built from source (scripts/build_llamacpp.sh): same ids as the exported HF tokenizer."""
    from transformers import AutoTokenizer

    from zhtw.tokenizer.textfiles import iter_path_texts

    out, meta = exported
    tok = AutoTokenizer.from_pretrained(out)
    shard = next((tiny / "corpus" / "shards").glob("*.jsonl.gz"))
    texts = [t[:300] for t, _ in zip(iter_path_texts(shard), range(40))] + TEXTS
    for text in texts:
        assert llama_tokenize(out / meta["gguf"]["file"], text) == tok(text)["input_ids"], text


@pytest.mark.slow
def test_llama_cpp_tokenises_and_scores_like_transformers(exported, tiny):
    """Where llama-cpp-python is installed: same token ids as the HF tokenizer, logits within f16 tolerance."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zhtw.tokenizer.textfiles import iter_path_texts

    out, meta = exported
    tok = AutoTokenizer.from_pretrained(out)
    llm = llama_cpp.Llama(model_path=str(out / meta["gguf"]["file"]), n_ctx=512, n_threads=1,
                          logits_all=True, verbose=False)  # fmt: skip
    shard = next((tiny / "corpus" / "shards").glob("*.jsonl.gz"))
    texts = [t[:300] for t, _ in zip(iter_path_texts(shard), range(40))] + TEXTS
    for text in texts:
        assert llm.tokenize(text.encode("utf-8"), add_bos=True) == tok(text)["input_ids"], text
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = tok(TEXTS[0] + TEXTS[1])["input_ids"]
    llm.reset()
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)], dtype=np.float32)
    want = _logits(model, torch.tensor([ids]))[0].numpy()
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= 2e-2 * scale
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9


def test_base_model_id_from_the_base_config_not_the_folder(tiny, tmp_path):
    """`_name_or_path` of the base's own config.json names the base; a local path there is not a hub id."""
    from zhtw.pretrain.export.model_card import model_identity

    base = tmp_path / "my-local-folder"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"_name_or_path": "meta-llama/Llama-2-7b-hf"}))
    ident = model_identity({"base_model": str(base)}, None, "llama2")
    assert (ident.base_model, ident.name, ident.basename) == ("meta-llama/Llama-2-7b-hf", "Llama-2-7b-hf-zhtw",
                                                             "Llama-2-7b-hf")  # fmt: skip
    (base / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path)}))
    assert model_identity({"base_model": str(base)}, None, "x").base_model is None
    assert model_identity({"base_model": str(base)}, "org/given", "x").base_model == "org/given"


def test_export_metadata_is_typed_and_versioned(exported):
    from zhtw.common.meta import SCHEMA_KEY
    from zhtw.pretrain.export import ExportMeta

    out, meta = exported
    record = ExportMeta.read(out)
    assert record.dtype == "float32" and record.verify == meta["verify"] and record.get("gguf")["file"]
    assert json.loads((out / "zhtw_export.json").read_text())[SCHEMA_KEY] == 1


def test_model_card_says_before_training_only_for_a_step_0_evaluation():
    """A resumed run's first logged evaluation is not 'before training': the card names its step instead."""
    from zhtw.pretrain.export.model_card import _first_eval_label

    assert _first_eval_label({"first_eval_step": 0}) == "before training"
    assert _first_eval_label({"first_eval_step": 500}) == "at the first evaluation, step 500"
    assert "before" not in _first_eval_label({})
