"""The four-stage demo: raw web text to an exported zh-TW model in a few minutes on 2 CPU cores.

Why: a user should see the whole flow work, end to end and offline, before spending GPU hours. Every stage
is the real one with tiny settings: the corpus stage on the bundled sample WET file, a tokenizer extending a
small SentencePiece BPE base (byte fallback, Llama's special ids) trained here on generated English, a tiny
random Llama created here (sizes multiples of 64), the prepare stage, a short training run of the real
trainer (LoRA + new token rows + S²-Attn, `configs/tiny-cpu.yaml` when the repository is at hand, with
overrides), and the export (merged safetensors + model card + GGUF). It prints where each artifact is and a
summary of each stage.

    python -m zhtw.pretrain.demo --output build/demo
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import OWNER_MARKER, claim_output, clear_owned_output
from zhtw.pretrain.train_summary import TrainSummary

__all__ = ["english_texts", "main", "make_tiny_llama", "run_demo", "train_base_tokenizer"]

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny-cpu.yaml"
BASE_VOCAB = 384
EXTENDED_VOCAB = 640

_SUBJECTS = ["the little fox", "a curious girl", "my old teacher", "the tired robot", "our neighbour",
             "a quiet student", "the brave sailor", "this small town", "the busy baker", "an honest farmer"]  # fmt: skip
_VERBS = [
    "found",
    "painted",
    "carried",
    "remembered",
    "built",
    "opened",
    "counted",
    "shared",
    "watched",
    "fixed",
]
_OBJECTS = ["a red kite", "the wooden boat", "three shiny stones", "an empty box", "the garden gate",
            "a long letter", "the broken clock", "some warm bread", "the map of the river", "a blue umbrella"]  # fmt: skip
_ENDINGS = ["before the rain came.", "and smiled.", "after school on Monday.", "with great care.",
            "while the birds sang.", "in 1998.", "for 12 friends.", "near the station.", "at 7 o'clock.",
            "because it was fun."]  # fmt: skip


def english_texts(n: int = 4000, seed: int = 0) -> list[str]:
    """Deterministic short English sentences (stories-like) to train the small base tokenizer on."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ENDINGS)}"
        out.append(s[0].upper() + s[1:])
    return out


def train_base_tokenizer(directory: Path, texts: list[str], vocab_size: int = BASE_VOCAB) -> Path:
    """A Llama-style SentencePiece BPE model (byte fallback, <unk>/<s>/</s> = 0/1/2) as directory/tokenizer.model."""
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    text_file = directory / "english.txt"
    text_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text_file),
        model_prefix=str(directory / "tokenizer"),
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    text_file.unlink()
    (directory / "tokenizer.vocab").unlink(missing_ok=True)
    return directory / "tokenizer.model"


def make_tiny_llama(directory: Path, vocab_size: int, *, tied: bool = False, seed: int = 0) -> dict[str, Any]:
    """Save a random-initialised Llama (2 layers, hidden 64, MLP 128, 4 heads, 2 KV heads) to `directory`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    model.generation_config.save_pretrained(directory)
    return {"parameters": sum(p.numel() for p in model.parameters()), "config": config.to_dict()}


def _stage(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def _done(t: float, summary: dict[str, Any], line: str) -> None:
    summary["seconds"] = round(time.perf_counter() - t, 1)
    print(f"--> {line} ({summary['seconds']} s)", flush=True)


def _sample_wet() -> Path:
    return Path(str(resources.files("zhtw.corpus") / "sample" / "sample.warc.wet.gz"))


def _train_argv(prepared: Path, corpus: Path, out: Path, steps: int) -> list[str]:
    options = {
        "model_path": prepared,
        "data_files": corpus / "shards",
        "data_cache_dir": out.parent / "data_cache",
        "output_dir": out,
        "quantization": "none",
        "trainable_embeddings": "new_rows",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "block_size": 64,
        "loss_chunk_tokens": 256,
        "eval_fraction": 0.05,
        "eval_max_docs": 20,
        "max_steps": steps,
        "learning_rate": 3e-3,
        "warmup_steps": 3,
        "per_device_train_batch_size": 8,
        "logging_steps": 5,
        "eval_strategy": "steps",
        "eval_steps": steps // 2,
        "save_steps": steps,
        "use_cpu": "true",
        "disable_tqdm": "true",
        "report_to": "tensorboard",
        "eval_on_start": "true",
    }
    argv = [str(TINY_CONFIG)] if TINY_CONFIG.is_file() else []
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return argv


def run_demo(
    output: str | Path, *, steps: int = 150, gguf: str = "q8_0", overwrite: bool = False
) -> dict[str, Any]:
    """Run all four stages into `output`; return a summary of each stage (also written to demo_summary.json)."""
    import torch

    out = Path(output).expanduser()
    if out.exists() and any(p.name != OWNER_MARKER for p in out.iterdir()):
        if not overwrite:
            raise SystemExit(f"demo: {out} is not empty; choose another --output or pass --overwrite.")
        try:
            clear_owned_output(out, command="the zhtw demo")  # never a directory the demo did not create
        except ZhtwError as e:
            raise SystemExit(f"demo: {e}") from e
    claim_output(out)
    summary: dict[str, Any] = {"output": str(out.resolve())}
    t_all = time.perf_counter()

    # 1. corpus
    from zhtw.corpus.cli import main as corpus_main

    t = _stage("1/4 corpus: zhtw-corpus run on the bundled sample WET file")
    try:
        corpus_main(
            ["run", str(_sample_wet()), "--output", str(out / "corpus"), "--workers", "1", "--no-progress"]
        )
    except SystemExit as e:
        if e.code:
            raise
    stats = json.loads((out / "corpus" / "stats.json").read_text(encoding="utf-8"))
    docs = stats["documents"]
    s1 = summary["corpus"] = {
        "documents_read": docs["read"],
        "documents_written": docs["written"],
        "characters_written": stats["characters"]["written"],
        "shards": str(out / "corpus" / "shards"),
    }
    _done(
        t, s1, f"{docs['written']} of {docs['read']} documents kept, {s1['characters_written']:,} characters"
    )

    # 2. tokenizer: a small English base created here, extended with zh-TW pieces
    from zhtw.tokenizer.cli import main as tok_main
    from zhtw.tokenizer.evaluate import evaluate, write_report

    t = _stage(f"2/4 tokenizer: a {BASE_VOCAB}-piece English BPE base, extended to {EXTENDED_VOCAB} pieces")
    base = out / "base"
    train_base_tokenizer(base, english_texts())
    model_info = make_tiny_llama(base, BASE_VOCAB)
    code = tok_main(["build", "--base", str(base), "--corpus", str(out / "corpus"), "--output",
                     str(out / "tokenizer"), "--vocab-size", str(EXTENDED_VOCAB), "--quiet", "--workers", "1"])  # fmt: skip
    if code:
        raise SystemExit(f"demo: zhtw-tok build failed with exit status {code}")
    shards = sorted(str(p) for p in (out / "corpus" / "shards").glob("*.jsonl.gz"))
    report = evaluate([str(base), str(out / "tokenizer")], shards)
    write_report(report, out / "tokenizer_eval")
    by_tok = {r["tokenizer"]: r["chars_per_token"] for r in report["rows"]}
    before, after = by_tok.get("base"), by_tok.get("tokenizer")
    s2 = summary["tokenizer"] = {
        "base": str(base / "tokenizer.model"),
        "directory": str(out / "tokenizer"),
        "vocab_size": EXTENDED_VOCAB,
        "added": EXTENDED_VOCAB - BASE_VOCAB,
        "chars_per_token_before": before,
        "chars_per_token_after": after,
        "report": str(out / "tokenizer_eval" / "eval.json"),
    }
    _done(t, s2, f"{s2['added']} pieces added; chars/token on the corpus {before:.3f} -> {after:.3f}")

    # 3. prepare + train
    from zhtw.pretrain.prepare import prepare_model
    from zhtw.pretrain.train import main as train_main

    t = _stage("3/4 pretrain: prepare (resize + init new rows), then a short LoRA + new-rows training run")
    print(f"tiny random Llama: {model_info['parameters']:,} parameters (2 layers, hidden 64) in {base}")
    prepare_model(str(base), str(out / "tokenizer"), str(out / "prepared"), log=lambda m: print(f"  {m}"))
    if train_main(_train_argv(out / "prepared", out / "corpus", out / "train", steps)):
        raise SystemExit("demo: training failed (see the message above)")
    run = TrainSummary.read(out / "train")
    final = run.final
    s3 = summary["pretrain"] = {
        "prepared": str(out / "prepared"),
        "train_output": str(out / "train"),
        "adapter": run.adapter_path,
        "steps": run.get("global_steps"),
        "tokens_seen": run.get("tokens_seen"),
        "eval_loss_before": final["first_eval_loss"],
        "eval_loss_after": final["eval_loss"],
        "loss_plot": str(out / "train" / "loss.png"),
    }
    _done(t, s3, f"{s3['steps']} steps, {s3['tokens_seen']:,} tokens; held-out loss "
          f"{s3['eval_loss_before']:.3f} -> {s3['eval_loss_after']:.3f}")  # fmt: skip

    # 4. export
    from zhtw.pretrain.export import export

    t = _stage(f"4/4 export: merged safetensors + model card + GGUF ({gguf})")
    meta = export(out / "prepared", out / "train" / "adapter", out / "export", dtype="bf16", gguf=gguf,
                  tokenizer_report=out / "tokenizer_eval" / "eval.json", log=lambda m: print(f"  {m}"))  # fmt: skip
    s4 = summary["export"] = {
        "directory": str(out / "export"),
        "model_card": str(out / "export" / "README.md"),
        "gguf": str(out / "export" / meta["gguf"]["file"]) if meta.get("gguf") else None,
        "max_abs_logit_diff": meta["verify"].get("max_abs_diff"),
        "peak_rss_mb": meta["peak_rss_mb"],
    }
    s4["sample"] = _generate(out / "export")
    s4["llama_cpp"] = _llama_cpp_check(out / "export", s4["gguf"])
    _done(
        t, s4, f"merged model verified (max |Δlogit| {s4['max_abs_logit_diff']:.2g}), card and GGUF written"
    )
    del torch

    summary["seconds"] = round(time.perf_counter() - t_all, 1)
    (out / "demo_summary.json").write_text(
        json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    _print_artifacts(summary)
    return summary


def _generate(directory: Path, prompt: str = "臺灣的") -> str:
    """Greedy continuation from the exported model with plain transformers (no peft)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    text = tok.decode(out[0], skip_special_tokens=True)
    print(f"  transformers generate({prompt!r}) -> {text!r}")
    return text


def _llama_cpp_check(directory: Path, gguf_file: str | None) -> dict[str, Any] | str:
    """Load the GGUF with llama-cpp-python when installed and compare its tokens with the HF tokenizer's."""
    if not gguf_file:
        return "no GGUF written"
    try:
        from llama_cpp import Llama
    except ImportError:
        print(
            "  llama-cpp-python not installed: GGUF checked by read-back only (`pip install llama-cpp-python`)"
        )
        return "llama-cpp-python not installed"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    llm = Llama(model_path=gguf_file, n_ctx=256, n_threads=1, verbose=False)
    text = "臺灣位於東亞。Once upon a time, 123 birds sang."
    same = llm.tokenize(text.encode("utf-8"), add_bos=True) == tok(text)["input_ids"]
    completion = llm("臺灣的", max_tokens=16, temperature=0.0)["choices"][0]["text"]
    print(f"  llama.cpp: tokens equal to HF: {same}; completion of '臺灣的' -> {completion!r}")
    return {"tokens_equal": same, "completion": completion}


def _print_artifacts(summary: dict[str, Any]) -> None:
    rows = [
        ("corpus shards", summary["corpus"]["shards"]),
        ("base tokenizer + tiny model", str(Path(summary["tokenizer"]["base"]).parent)),
        ("extended tokenizer", summary["tokenizer"]["directory"]),
        ("tokenizer report", summary["tokenizer"]["report"]),
        ("prepared model", summary["pretrain"]["prepared"]),
        ("adapter", summary["pretrain"]["adapter"]),
        ("loss plot", summary["pretrain"]["loss_plot"]),
        ("merged model", summary["export"]["directory"]),
        ("model card", summary["export"]["model_card"]),
        ("GGUF", summary["export"]["gguf"] or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\n=== artifacts (demo finished in {summary['seconds']} s) ===")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def main(argv: list[str] | None = None) -> None:
    """`python -m zhtw.pretrain.demo --output build/demo`."""
    p = argparse.ArgumentParser(prog="python -m zhtw.pretrain.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="build/demo", help="directory for every stage's output")
    p.add_argument("--steps", type=int, default=150, help="training steps")
    p.add_argument("--gguf", choices=["f16", "q8_0", "none"], default="q8_0", help="GGUF tensor type")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: OpenMP threads spin against each other on small shared machines)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    run_demo(args.output, steps=args.steps, gguf=args.gguf, overwrite=args.overwrite)


if __name__ == "__main__":
    main(sys.argv[1:])
