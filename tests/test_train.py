"""`zhtw-pretrain train`: config parsing, the memory estimator, and real training runs on CPU.

The training tests use the real stories260K model with a small extended tokenizer built in-test and
zh-TW text from ../shared/data/corpus. Torch runs on one thread here: two OpenMP threads on two shared
cores spin against other jobs and run ~20x slower.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from zhtw.pretrain.memory import ModelShape, estimate_memory, model_shape  # noqa: E402
from zhtw.pretrain.train_config import DATACLASSES, ConfigError, build_parser, load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
LLAMA2_7B = ModelShape(
    vocab_rows=61440,
    hidden=4096,
    intermediate=11008,
    layers=32,
    heads=32,
    kv_heads=32,
    head_dim=128,
    tied=False,
)
GIB = 1024**3


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --------------------------------------------------------------------------------------------------------------
# configuration


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    config = load_config([str(path), "--dry_run", "true"])
    assert config.model.model_path and config.training.output_dir
    assert config.lora.lora_r > 0 and config.data.block_size >= 64


def test_recipe_config_is_the_published_recipe():
    c = load_config([str(REPO / "configs/llama2-7b-zhtw-qlora.yaml"), "--dry_run", "true"])
    assert (c.model.quantization, c.model.double_quant, c.model.compute_dtype) == ("nf4", True, "bfloat16")
    assert c.lora.lora_r == 32 and c.lora.lora_target_modules == ["all-linear"]
    assert c.training.learning_rate == 5e-5 and c.training.lr_scheduler_type == "cosine"
    t = c.training  # micro batch 2 x accumulation 16: the published effective batch of 32 on one 24 GB card
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps) == (2, 16)
    assert c.training.num_train_epochs == 3 and c.s2.s2attn and c.model.trainable_embeddings == "new_rows"


def test_command_line_overrides_yaml_and_types_values():
    c = load_config(
        [str(REPO / "configs/tiny-cpu.yaml"), "--lora_r", "4", "--learning_rate", "1e-4"]
        + ["--lora_target_modules", "q_proj", "v_proj", "--s2attn", "false", "--stop_at_loss", "2.5"]
    )
    assert c.lora.lora_r == 4 and c.training.learning_rate == 1e-4
    assert c.lora.lora_target_modules == ["q_proj", "v_proj"]
    assert c.s2.s2attn is False and c.run.stop_at_loss == 2.5
    assert c.data.block_size == 128  # from the YAML


def test_unknown_keys_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs/tiny-cpu.yaml").read_text() + "\nlora_rank: 8\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lora_rank'\]"):
        load_config([str(bad)])
    with pytest.raises(ConfigError, match="unknown command-line option"):
        load_config([str(REPO / "configs/tiny-cpu.yaml"), "--lora_rnak", "8"])
    with pytest.raises(ConfigError, match="trainable_embeddings must be one of"):
        load_config([str(REPO / "configs/tiny-cpu.yaml"), "--trainable_embeddings", "rows"])


def test_weighted_data_files_in_yaml_and_on_the_command_line(tmp_path):
    tiny = (REPO / "configs/tiny-cpu.yaml").read_text()
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(
        tiny + "\ndata_files:\n  - {path: build/corpus, weight: 0.9}\n  - {path: english/, weight: 0.1}\n"
    )
    c = load_config([str(mixed), "--output_dir", str(tmp_path / "o")])
    assert c.data.data_files == ["build/corpus", "english/"] and c.data.data_weights == [0.9, 0.1]
    c = load_config(
        [str(REPO / "configs/tiny-cpu.yaml"), "--data_files", "a", "b", "--data_weights", "3", "1"]
    )
    assert c.data.data_files == ["a", "b"] and c.data.data_weights == [3.0, 1.0]
    assert load_config([str(REPO / "configs/tiny-cpu.yaml"), "--data_files", "a"]).data.data_weights is None

    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny + "\ndata_files:\n  - {path: build/corpus, weight: 0.9}\n  - english/\n")
    with pytest.raises(ConfigError, match=r"all be paths or all be \{path, weight\} mappings"):
        load_config([str(bad)])
    both = tmp_path / "both.yaml"
    both.write_text(mixed.read_text() + "data_weights: [1, 1]\n")
    with pytest.raises(ConfigError, match="not both"):
        load_config([str(both)])
    assert load_config([str(mixed), "--data_weights", "1", "3"]).data.data_weights == [1.0, 3.0]  # CLI wins
    with pytest.raises(ConfigError, match="one data_weights entry per data_files entry"):
        load_config([str(REPO / "configs/tiny-cpu.yaml"), "--data_files", "a", "b", "--data_weights", "1"])
    with pytest.raises(ConfigError, match="data_weights must be positive numbers"):
        load_config([str(REPO / "configs/tiny-cpu.yaml"), "--data_files", "a", "--data_weights", "0"])
    with pytest.raises(ConfigError, match="streaming: false"):
        load_config([str(mixed), "--streaming", "true"])


def test_every_option_has_help_text(capsys):
    for cls in DATACLASSES:
        for f in dataclasses.fields(cls):
            if f.init and not f.name.startswith("_"):
                assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
    build_parser().print_help()
    text = capsys.readouterr().out
    for option in ("--trainable_embeddings", "--s2attn_ratio", "--stop_at_loss", "--dry_run", "--lora_r"):
        assert option in text


# --------------------------------------------------------------------------------------------------------------
# memory estimate


def test_estimate_for_7b_orders_and_magnitudes():
    new = 61440 - 32000
    est = {
        mode: estimate_memory(LLAMA2_7B, block_size=2048, trainable_embeddings=mode, new_rows=new)
        for mode in ("none", "new_rows", "full")
    }
    assert est["none"].peak_gib < est["new_rows"].peak_gib < est["full"].peak_gib
    # LoRA r=32 on all linear layers of Llama-2-7B: 32 layers x 32 x (4x(4096+4096) + 3x(4096+11008))
    assert est["none"].lora_params == 32 * 32 * (4 * 8192 + 3 * 15104)
    assert est["new_rows"].trainable_row_params == 2 * new * 4096
    assert 6.7e9 < est["none"].total_params < 7.1e9
    assert 5 < est["none"].peak_gib < 12 and est["new_rows"].peak_gib < 20
    by_len = [estimate_memory(LLAMA2_7B, block_size=s, new_rows=new).peak_gib for s in (2048, 4096, 8192)]
    assert by_len[0] < by_len[1] < by_len[2]
    nf4 = estimate_memory(LLAMA2_7B, block_size=2048).parts["base_linear"]
    full = estimate_memory(LLAMA2_7B, block_size=2048, quantization="none").parts["base_linear"]
    assert 3.5 < full / nf4 < 4.0  # 2 bytes vs ~0.52 bytes per weight
    unchunked = estimate_memory(LLAMA2_7B, block_size=8192, loss_chunk_tokens=None).parts["logits"]
    assert unchunked / GIB > 4  # what the chunked loss avoids


# --------------------------------------------------------------------------------------------------------------
# the real tiny model


def _write_jsonl(src: Path, dst: Path, max_bytes: int, skip_bytes: int = 0) -> Path:
    seen = written = 0
    with gzip.open(src, "rt", encoding="utf-8") as f, dst.open("w", encoding="utf-8") as out:
        for line in f:
            text = json.loads(line)["text"]
            n = len(text.encode())
            seen += n
            if seen <= skip_bytes:
                continue
            out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            written += n
            if written >= max_bytes:
                break
    return dst


@pytest.fixture(scope="module")
def tiny(shared_data, tmp_path_factory):
    """stories260K prepared for a 640-piece zh-TW tokenizer, plus train text (~200 KB of two sources)."""
    from zhtw.pretrain.prepare import prepare_model
    from zhtw.tokenizer.cli import main as tok_main

    root = tmp_path_factory.mktemp("tiny")
    train = root / "text"
    train.mkdir()
    _write_jsonl(shared_data / "corpus/train/hongloumeng.jsonl.gz", train / "hongloumeng.jsonl", 120_000)
    _write_jsonl(shared_data / "corpus/train/msdocs_zhtw.jsonl.gz", train / "msdocs.jsonl", 100_000)
    base = shared_data / "models/stories260K"
    tok_main(["build", "--base", str(base), "--corpus", str(train), "--output", str(root / "tok")]
             + ["--vocab-size", "640", "--quiet"])  # fmt: skip
    prepare_model(str(base), str(root / "tok"), str(root / "prepared"))
    return {"root": root, "prepared": root / "prepared", "text": train, "base": base, "tok": root / "tok",
            "shared": shared_data}  # fmt: skip


def _train_argv(tiny, out: Path, *extra: str) -> list[str]:
    return [
        str(REPO / "configs/tiny-cpu.yaml"),
        "--model_path", str(tiny["prepared"]),
        "--data_files", str(tiny["text"]),
        "--data_cache_dir", str(tiny["root"] / "cache"),
        "--output_dir", str(out),
        "--block_size", "64",
        "--eval_fraction", "0.1",
        "--eval_max_docs", "20",
        "--report_to", "tensorboard",
        "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


@pytest.mark.shared_data
def test_estimator_counts_match_the_built_model(tiny, one_thread):
    from zhtw.pretrain.train import build_model, check_tokenizer, count_parameters, estimate_for_config

    meta = check_tokenizer(str(tiny["prepared"]))
    for mode, norms in (("new_rows", False), ("full", False), ("none", True)):
        config = load_config(
            _train_argv(
                tiny, tiny["root"] / "x", "--trainable_embeddings", mode, "--trainable_norms", str(norms)
            )
        )
        model = build_model(config, meta, "none", on_cpu=True)
        trainable, total = count_parameters(model)
        est = estimate_for_config(config)
        # one definition (PARAMETER_DEFINITION): the estimate and the built model agree exactly
        assert (est.trainable_params, est.total_params) == (trainable, total), mode


@pytest.mark.shared_data
def test_dry_run_prints_counts_and_memory(tiny, capsys):
    from zhtw.pretrain.train import main

    main(_train_argv(tiny, tiny["root"] / "dry", "--dry-run"))
    out = capsys.readouterr().out
    assert "trainable" in out and "estimated peak GPU memory" in out and "24 GB card" in out
    assert not (tiny["root"] / "dry").exists()


@pytest.mark.shared_data
def test_mismatched_tokenizer_is_refused(tiny, tmp_path, capsys):
    from zhtw.pretrain.train import TokenizerMismatchError, check_tokenizer, main

    with pytest.raises(TokenizerMismatchError, match=r"has 512 pieces.*sized for 640.*zhtw-pretrain prepare"):
        check_tokenizer(str(tiny["prepared"]), str(tiny["base"]))
    assert main([*_train_argv(tiny, tmp_path / "out"), "--tokenizer_path", str(tiny["base"])]) == 1  # refused
    assert "tokenizer size mismatch" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def trained(tiny):
    """50 steps of the tiny config (S²-Attn on, new rows + LoRA + norms), checkpoints at 25 and 50."""
    from zhtw.pretrain.train import main

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tiny["root"] / "run"
    held_out = tiny["root"] / "wiki_drcd.jsonl"
    _write_jsonl(tiny["shared"] / "corpus/eval/wiki_drcd.jsonl.gz", held_out, 4500)
    try:
        main(_train_argv(tiny, out, "--max_steps", "50", "--save_steps", "25", "--eval_steps", "25")
             + ["--eval_on_start", "true", "--logging_steps", "5", "--eval_text_files", str(held_out)])  # fmt: skip
    finally:
        torch.set_num_threads(old)
    return out


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.shared_data
@pytest.mark.slow
def test_summary_and_card_have_the_before_after_bits_per_char_table(trained):
    from zhtw.pretrain.export.model_card import bits_per_char_rows

    table = json.loads((trained / "training_summary.json").read_text())["bits_per_char"]
    assert set(table) == {"files", "base", "prepared_step0", "trained"}
    assert table["files"]["wiki_drcd"]["chars"] >= 1500
    base, step0, after = (table[k]["wiki_drcd"] for k in ("base", "prepared_step0", "trained"))
    assert all(0 < v < 200 for v in (base, step0, after)), table  # stories260K never saw Chinese
    assert after < step0 - 0.5, (step0, after)  # training on zh-TW lowered held-out bits per character
    assert bits_per_char_rows(table) == [("wiki_drcd", f"{base:.4g}", f"{step0:.4g}", f"{after:.4g}")]


@pytest.mark.shared_data
def test_missing_eval_text_file_stops_before_training(tiny, tmp_path, capsys):
    from zhtw.pretrain.train import main

    argv = [*_train_argv(tiny, tmp_path / "out"), "--eval_text_files", str(tmp_path / "gone.jsonl")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "eval_text_files:" in err and "gone.jsonl does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "adapter").exists()


@pytest.mark.shared_data
@pytest.mark.slow
def test_training_lowers_held_out_loss_and_writes_outputs(trained, tiny):
    summary = json.loads((trained / "training_summary.json").read_text())
    assert summary["format"] == "zhtw-train/1" and summary["global_steps"] == 50
    first, last = summary["final"]["first_eval_loss"], summary["final"]["eval_loss"]
    assert last < first - 1.0, (first, last)
    assert summary["final"]["eval_perplexity"] == pytest.approx(2.718281828**last, rel=1e-6)
    assert summary["tokens_seen"] == 50 * 8 * 64
    assert summary["prepare_metadata"]["new_token_ids"] == [512, 640]
    assert Path(summary["adapter_path"]) == (trained / "adapter").resolve()
    assert summary["versions"]["peft"] and summary["s2attn"]["enabled"]
    assert (trained / "loss.png").stat().st_size > 10_000
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))

    weights = _load(trained / "adapter/adapter_model.safetensors")
    rows = [k for k in weights if "trainable_tokens" in k]
    assert rows and all(weights[k].shape == (128, 64) for k in rows)  # the 128 new rows only
    assert any("lora_A" in k for k in weights) and any("norm" in k for k in weights)
    assert not any(v.shape[0] >= 512 for v in weights.values())  # no full embedding matrix
    # the trained rows moved away from the prepared initialisation
    init = _load(tiny["prepared"] / "model.safetensors")["model.embed_tokens.weight"][512:640]
    assert not torch.allclose(weights[rows[0]].float(), init.float())
    for step in (25, 50):
        ckpt = trained / f"checkpoint-{step}"
        assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / "optimizer.pt").is_file()


@pytest.mark.shared_data
@pytest.mark.slow
def test_resume_from_middle_checkpoint_is_exact(trained, tiny, tmp_path):
    from zhtw.pretrain.train import main

    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copytree(trained / "checkpoint-25", out / "checkpoint-25")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(_train_argv(tiny, out, "--max_steps", "50", "--save_steps", "25", "--eval_steps", "25")
             + ["--logging_steps", "5", "--resume_from_checkpoint", "last"])  # fmt: skip
    finally:
        torch.set_num_threads(old)
    a = _load(trained / "adapter/adapter_model.safetensors")
    b = _load(out / "adapter/adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    def losses(run: Path) -> dict[int, float]:
        history = json.loads((run / "training_summary.json").read_text())["log_history"]
        return {h["step"]: h["loss"] for h in history if "loss" in h and h["step"] > 25}

    assert losses(out) == losses(trained) and len(losses(out)) == 5


# --------------------------------------------------------------------------------------------------------------
# 4-bit (bitsandbytes on CPU)


@pytest.fixture(scope="module")
def tiny_nf4(tiny):
    """A random Llama with bitsandbytes-friendly widths (multiples of 64) and stories260K's tokenizer, prepared."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from zhtw.pretrain.prepare import prepare_model

    pytest.importorskip("bitsandbytes")
    base = tiny["root"] / "base64"
    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(base)
    shutil.copy(tiny["base"] / "tokenizer.model", base / "tokenizer.model")
    prepare_model(str(base), str(tiny["tok"]), str(tiny["root"] / "prepared64"))
    return tiny["root"] / "prepared64"


@pytest.mark.shared_data
@pytest.mark.slow
def test_nf4_gradients_match_a_dequantised_copy(tiny, tiny_nf4, one_thread):
    import bitsandbytes.functional as bnbf
    from bitsandbytes.nn import Linear4bit

    from zhtw.pretrain.loss import chunked_causal_lm_loss
    from zhtw.pretrain.train import build_model, check_tokenizer

    config = load_config(
        _train_argv(tiny, tiny["root"] / "x", "--model_path", str(tiny_nf4), "--quantization", "nf4")
    )
    meta = check_tokenizer(str(tiny_nf4))
    torch.manual_seed(1)
    q = build_model(config, meta, "nf4", on_cpu=True)
    torch.manual_seed(1)
    ref = build_model(config, meta, "none", on_cpu=True)
    layers4 = {n: m for n, m in q.named_modules() if isinstance(m, Linear4bit)}
    assert len(layers4) == 2 * 7
    ref_modules = dict(ref.named_modules())
    with torch.no_grad():
        for name, m in layers4.items():  # the reference computes with exactly the dequantised weights
            ref_modules[name].weight.copy_(bnbf.dequantize_4bit(m.weight.data, m.weight.quant_state).float())
        ref.load_state_dict({k: v for k, v in q.state_dict().items() if "lora_" in k}, strict=False)
        for (
            k,
            v,
        ) in q.named_parameters():  # LoRA B starts at zero: make it non-zero so every path carries gradient
            if "lora_B" in k:
                v.normal_(0, 0.02)
                dict(ref.named_parameters())[k].copy_(v)

    ids = torch.randint(3, 640, (2, 64), generator=torch.Generator().manual_seed(0))
    for model in (q, ref):  # the trap: a no-grad eval pass first used to repack the 4-bit weights
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)

    def grads(model):
        model.train()
        model.zero_grad()
        out = model(input_ids=ids, output_hidden_states=True, logits_to_keep=1, use_cache=False)
        loss = chunked_causal_lm_loss(
            out.hidden_states[-1], model.get_output_embeddings(), ids, chunk_tokens=32
        )
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    lq, gq = grads(q)
    lr, gr = grads(ref)
    assert torch.allclose(lq, lr, rtol=1e-4, atol=1e-5)
    assert gq.keys() == gr.keys() and any("trainable_tokens" in k for k in gq)
    for k in gq:
        assert torch.allclose(gq[k], gr[k], rtol=1e-3, atol=1e-6), k


@pytest.mark.shared_data
@pytest.mark.slow
def test_nf4_training_run(tiny, tiny_nf4, tmp_path, one_thread):
    from zhtw.pretrain.train import main

    out = tmp_path / "nf4"
    main(_train_argv(tiny, out, "--model_path", str(tiny_nf4), "--quantization", "nf4", "--max_steps", "6")
         + ["--save_steps", "6", "--eval_strategy", "no", "--logging_steps", "2", "--report_to", "none"])  # fmt: skip
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["quantization"] == "nf4" and summary["global_steps"] == 6
    assert not list((out / "tensorboard").glob("**/events*"))  # --report_to none is honoured
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert all(map(lambda x: x == x and x < 20, losses))  # finite
    weights = _load(out / "adapter/adapter_model.safetensors")
    assert {w.shape for k, w in weights.items() if "trainable_tokens" in k} == {(128, 64)}
    assert sum("trainable_tokens" in k for k in weights) == 2  # untied: embed_tokens and lm_head rows


# --------------------------------------------------------------------------------------------------------------
# data parallel


@pytest.mark.shared_data
@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "zhtw.pretrain.cli", "train",
           *_train_argv(tiny, out, "--max_steps", "4", "--per_device_train_batch_size", "4", "--save_steps", "4",
                        "--eval_strategy", "no", "--logging_steps", "1", "--ddp_backend", "gloo")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sums = dict(re.findall(r"rank (\d): trainable checksum ([-+0-9.e]{16})", proc.stdout + proc.stderr))
    assert sums.keys() == {"0", "1"} and sums["0"] == sums["1"], sums
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["tokens_seen"] == 4 * 4 * 2 * 64


def test_model_shape_reads_config(tmp_path):
    cfg = {"vocab_size": 640, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
           "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 8, "tie_word_embeddings": True}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    shape = model_shape(tmp_path)
    assert shape.tied and shape.linear_shapes()["k_proj"] == (64, 32)
