"""Cost of one QLoRA training step, with and without S²-Attn.

CPU (always): the tiny config (real stories260K, 640-piece zh-TW tokenizer, LoRA + new rows + norms) at a
long block size: seconds per step (forward, chunked loss, backward, AdamW) and peak RSS, each variant in
its own process, interleaved over several rounds because these cores are shared.

GPU (only when CUDA is present): a Llama-2-7B-shaped model with random weights and a 61,440-piece
vocabulary, NF4 double quantisation with bf16 compute, LoRA r=32 on all linear layers, the 29,440 new rows
trainable, activation checkpointing, micro batch 1 at 2k/4k/8k tokens, with and without S²-Attn: peak
allocated GPU memory and tokens per second, next to the `--dry-run` estimate.

    .venv/bin/python benchmarks/pretrain_step.py --shared ../shared/data [--block-size 2048] [--gpu-only]

Prints a table and writes build/benchmarks/pretrain_step.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "benchmarks" / "pretrain_step.json"


# --------------------------------------------------------------------------------------------------------------
# one measured variant (runs in a child process)


def _config(model_path: str, block: int, s2: bool, extra: list[str]) -> Any:
    from zhtw.pretrain.train_config import load_config

    return load_config(
        [str(REPO / "configs/tiny-cpu.yaml"), "--model_path", model_path, "--output_dir", "/tmp/unused",
         "--block_size", str(block), "--s2attn", str(s2).lower(), "--dry_run", "true", *extra]
    )  # fmt: skip


def _steps(
    model: Any, config: Any, vocab: int, block: int, batch: int, steps: int, device: str
) -> list[float]:
    import torch

    from zhtw.pretrain.loss import chunked_causal_lm_loss

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    times = []
    model.train()
    for _ in range(steps):
        ids = torch.randint(3, vocab, (batch, block), generator=gen).to(device)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            out = model(input_ids=ids, output_hidden_states=True, logits_to_keep=1, use_cache=False)
            loss = chunked_causal_lm_loss(
                out.hidden_states[-1],
                model.get_output_embeddings(),
                ids,
                chunk_tokens=config.model.loss_chunk_tokens,
            )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def worker_cpu(model_path: str, block: int, s2: bool, steps: int) -> dict[str, Any]:
    import torch

    from zhtw.pretrain.train import build_model, check_tokenizer

    torch.set_num_threads(1)
    config = _config(model_path, block, s2, [])
    meta = check_tokenizer(model_path)
    model = build_model(config, meta, "none", on_cpu=True)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = _steps(model, config, meta["embedding_rows"], block, 1, steps + 1, "cpu")[1:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "s2attn": s2,
        "block_size": block,
        "step_s": times,
        "peak_rss_mb": peak,
        "rss_before_mb": rss_before,
    }


def worker_gpu(model_path: str, block: int, s2: bool, steps: int) -> dict[str, Any]:
    import torch

    from zhtw.pretrain.train import build_model, estimate_for_config

    config = _config(model_path, block, s2, ["--use_cpu", "false", "--quantization", "nf4", "--lora_r", "32",
                                             "--lora_alpha", "64", "--lora_dropout", "0.05", "--trainable_norms",
                                             "false", "--per_device_train_batch_size", "1",
                                             "--activation_checkpointing", "true", "--loss_chunk_tokens", "1024"])  # fmt: skip
    meta = json.loads((Path(model_path) / "zhtw_prepare.json").read_text())
    model = build_model(config, meta, "nf4", on_cpu=False)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.cuda.reset_peak_memory_stats()
    times = _steps(model, config, meta["embedding_rows"], block, 1, steps + 1, "cuda")[1:]
    peak = torch.cuda.max_memory_allocated() / 1024**3
    est = estimate_for_config(config)
    return {"s2attn": s2, "block_size": block, "step_s": times, "peak_gib": peak, "estimate_gib": est.peak_gib,
            "reserved_gib": torch.cuda.max_memory_reserved() / 1024**3}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# fixtures


def _tiny_prepared(shared: Path, root: Path) -> str:
    from zhtw.pretrain.prepare import prepare_model
    from zhtw.tokenizer.cli import main as tok_main

    text = root / "text.jsonl"
    with gzip.open(shared / "corpus/train/hongloumeng.jsonl.gz", "rt") as f, text.open("w") as out:
        size = 0
        for line in f:
            out.write(line)
            size += len(line)
            if size > 200_000:
                break
    base = shared / "models/stories260K"
    tok_main(["build", "--base", str(base), "--corpus", str(text), "--output", str(root / "tok"),
              "--vocab-size", "640", "--quiet"])  # fmt: skip
    prepare_model(str(base), str(root / "tok"), str(root / "prepared"))
    return str(root / "prepared")


def _random_7b(root: Path) -> str:
    """A Llama-2-7B-shaped model with random weights and a 61,440-row vocabulary, saved in bf16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = root / "llama2-7b-random"
    cfg = LlamaConfig(vocab_size=61440, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=8192,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)  # fmt: skip
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    meta = {"format": "zhtw-prepare/1", "base_model": "random", "new_token_ids": [32000, 61440],
            "embedding_rows": 61440, "tokenizer_size": 61440, "tie_word_embeddings": False}  # fmt: skip
    (out / "zhtw_prepare.json").write_text(json.dumps(meta))
    return str(out)


def _child(mode: str, model_path: str, block: int, s2: bool, steps: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, "--worker", mode, "--model", model_path, "--block-size", str(block),
           "--steps", str(steps)] + (["--s2"] if s2 else [])  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"s2attn": s2, "block_size": block, "error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--block-size", type=int, default=2048, help="CPU block size")
    p.add_argument("--steps", type=int, default=4, help="timed steps per run (after one warm-up step)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved CPU rounds")
    p.add_argument("--gpu-only", action="store_true")
    p.add_argument("--worker", choices=["cpu", "gpu"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--s2", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fn = worker_cpu if args.worker == "cpu" else worker_gpu
        print(json.dumps(fn(args.model, args.block_size, args.s2, args.steps)))
        return

    import torch

    results: dict[str, Any] = {"torch": torch.__version__, "cpu": [], "gpu": []}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.gpu_only:
            model = _tiny_prepared(args.shared, Path(tmp))
            for _ in range(args.rounds):
                for s2 in (False, True):
                    results["cpu"].append(_child("cpu", model, args.block_size, s2, args.steps))
        if torch.cuda.is_available():
            model = _random_7b(Path(tmp))
            for block in (2048, 4096, 8192):
                for s2 in (False, True):
                    results["gpu"].append(_child("gpu", model, block, s2, args.steps))
            shutil.rmtree(model, ignore_errors=True)
    _report(results, args.block_size)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT}")


def _report(results: dict[str, Any], block: int) -> None:
    if results["cpu"]:
        print(f"\nCPU, tiny config (stories260K + 640 pieces), block {block}, batch 1, 1 thread")
        print("| attention | s/step (best) | s/step (median) | peak RSS MB | vs full (best) |")
        print("|---|---:|---:|---:|---:|")
        rows = {}
        for s2 in (False, True):
            runs = [r for r in results["cpu"] if r["s2attn"] == s2 and "error" not in r]
            if not runs:
                print(f"| {'S²-Attn' if s2 else 'full'} | failed | | | |")
                continue
            steps = [t for r in runs for t in r["step_s"]]
            rows[s2] = (min(steps), statistics.median(steps), max(r["peak_rss_mb"] for r in runs))
        for s2, (best, med, rss) in rows.items():
            ratio = best / rows[False][0] if False in rows else float("nan")
            print(f"| {'S²-Attn' if s2 else 'full'} | {best:.3f} | {med:.3f} | {rss:.0f} | {ratio:.2f}x |")
        results["cpu_summary"] = {("s2attn" if k else "full"): v for k, v in rows.items()}
    if results["gpu"]:
        print("\nGPU, Llama-2-7B shape, NF4 + LoRA r=32 + new rows, micro batch 1")
        print("| tokens | attention | peak GiB | --dry-run GiB | tokens/s |")
        print("|---:|---|---:|---:|---:|")
        for r in results["gpu"]:
            if "error" in r:
                print(f"| {r['block_size']} | {'S²' if r['s2attn'] else 'full'} | failed | | |")
                continue
            tps = r["block_size"] / statistics.median(r["step_s"])
            print(f"| {r['block_size']} | {'S²-Attn' if r['s2attn'] else 'full'} | {r['peak_gib']:.2f} | "
                  f"{r['estimate_gib']:.2f} | {tps:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
