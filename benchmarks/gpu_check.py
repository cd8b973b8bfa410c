"""Issue 13's GPU check: peak memory and speed of the long-context recipe next to the estimator's figure.

A Llama-2-7B-shaped model with random weights and the 61,440-row vocabulary, NF4 (double quantisation, bf16
compute), LoRA r=32 on all linear layers, the 29,440 new rows trainable, activation checkpointing, micro batch 1:
full attention (sdpa) and S²-Attn at 2k, 4k and 8k tokens with the gathered row path; at 8k also with offloaded
checkpoints, bf16 LoRA optimizer states, and peft's own row layer (the path before issue 13). Each variant: one
warm-up step, then timed steps (forward under bf16 autocast as the Trainer does, chunked loss, backward, AdamW):
``torch.cuda.max_memory_allocated`` against ``estimate_for_config``, tokens/s, and S²-Attn's step time relative
to sdpa. Writes JSON and a Markdown table. Run through ``benchmarks/gpu_check.sh`` (installs bitsandbytes).

    python benchmarks/gpu_check.py --out build/benchmarks/gpu_check.json [--steps 2] [--work /tmp/zhtw-gpu]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "llama2-7b-zhtw-qlora.yaml"
GIB = 1024**3
# (attention, block, extra options); the first variant of each model build reuses the loaded model
VARIANTS: list[tuple[str, int, list[str]]] = [
    ("sdpa", 2048, []),
    ("s2attn", 2048, []),
    ("sdpa", 4096, []),
    ("s2attn", 4096, []),
    ("sdpa", 8192, []),
    ("s2attn", 8192, []),
    ("s2attn", 8192, ["--offload_activations", "true"]),
    ("s2attn", 8192, ["--lora_optimizer_states", "bfloat16"]),
    ("s2attn", 2048, ["--trainable_rows_impl", "peft"]),
    ("s2attn", 8192, ["--trainable_rows_impl", "peft"]),
]


def random_7b(root: Path) -> Path:
    """Save a random-weight Llama-2-7B-shaped model (bf16) with zhtw_prepare.json's new token ids."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = root / "llama2-7b-random"
    if (out / "zhtw_prepare.json").is_file():
        return out
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
    return out


def load(model_dir: Path, attn: str, block: int, extra: list[str]) -> Any:
    from zhtw.pretrain.train_config import load_config

    return load_config([str(RECIPE), "--dry_run", "true", "--model_path", str(model_dir), "--block_size",
                        str(block), "--per_device_train_batch_size", "1", "--s2attn", str(attn == "s2attn"),
                        "--output_dir", "/tmp/unused", *extra])  # fmt: skip


def _optimizer(model: Any, config: Any) -> torch.optim.Optimizer:
    from zhtw.pretrain.new_rows import AdamWBF16States

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if config.model.lora_optimizer_states != "bfloat16":
        return torch.optim.AdamW([p for _, p in named], lr=1e-5)
    groups = [{"params": [p for n, p in named if "lora_" in n], "bf16_states": True},
              {"params": [p for n, p in named if "lora_" not in n], "bf16_states": False}]  # fmt: skip
    return AdamWBF16States(groups, lr=1e-5)


def run_steps(model: Any, config: Any, steps: int) -> list[float]:
    """Warm-up + `steps` timed training steps; the forward under bf16 autocast (as accelerate wraps it)."""
    from zhtw.pretrain.loss import chunked_causal_lm_loss
    from zhtw.pretrain.new_rows import offloaded_activations

    opt = _optimizer(model, config)
    gen = torch.Generator().manual_seed(0)
    block = config.data.block_size
    times = []
    model.train()
    for i in range(steps + 1):
        if i == 1:
            torch.cuda.reset_peak_memory_stats()  # states exist from here on, as the estimate assumes
        ids = torch.randint(3, 61440, (1, block), generator=gen).cuda()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        offload = offloaded_activations() if config.model.offload_activations else contextlib.nullcontext()
        with torch.autocast("cuda", dtype=torch.bfloat16), offload:
            out = model(input_ids=ids, output_hidden_states=True, logits_to_keep=1, use_cache=False)
        hidden = out.hidden_states[-1]
        del out
        loss = chunked_causal_lm_loss(hidden, model.get_output_embeddings(), ids,
                                      chunk_tokens=config.model.loss_chunk_tokens)  # fmt: skip
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        del hidden, loss
    del opt
    return times[1:]


def measure(model_dir: Path, attn: str, block: int, extra: list[str], steps: int) -> dict[str, Any]:
    from zhtw.pretrain.train import build_model, estimate_for_config

    config = load(model_dir, attn, block, extra)
    row: dict[str, Any] = {"attention": attn, "block_size": block, "options": " ".join(extra) or "recipe"}
    row["estimate_gib"] = round(estimate_for_config(config).peak_gib, 3)
    meta = json.loads((model_dir / "zhtw_prepare.json").read_text())
    model = None
    try:
        model = build_model(config, meta, "nf4", on_cpu=False)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        times = run_steps(model, config, steps)
        peak = torch.cuda.max_memory_allocated() / GIB
        row.update(
            peak_gib=round(peak, 3),
            reserved_gib=round(torch.cuda.max_memory_reserved() / GIB, 3),
            error_pct=round(100 * (row["estimate_gib"] / peak - 1), 1),
            step_s=round(sum(times) / len(times), 3),
            tokens_per_s=round(block * len(times) / sum(times), 1),
        )
    except torch.cuda.OutOfMemoryError as exc:
        row["error"] = f"out of memory: {str(exc).splitlines()[0][:200]}"
    finally:
        del model
        gc.collect()
        torch.cuda.empty_cache()
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = "| attention | tokens | options | measured GiB | estimate GiB | est. error | step s | tokens/s | S²/sdpa |"
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    sdpa = {r["block_size"]: r.get("step_s") for r in rows if r["attention"] == "sdpa"}
    for r in rows:
        ratio = ""
        if (
            r["attention"] == "s2attn"
            and r["options"] == "recipe"
            and sdpa.get(r["block_size"])
            and r.get("step_s")
        ):
            ratio = f"{r['step_s'] / sdpa[r['block_size']]:.2f}x"
        lines.append(
            f"| {r['attention']} | {r['block_size']} | {r['options']} | {r.get('peak_gib', r.get('error', '-'))} | "
            f"{r['estimate_gib']} | {r.get('error_pct', '-')}% | {r.get('step_s', '-')} | "
            f"{r.get('tokens_per_s', '-')} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "build" / "benchmarks" / "gpu_check.json")
    p.add_argument("--work", type=Path, default=Path("/tmp/zhtw-gpu-check"))
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit(
            "gpu_check: no CUDA GPU here; run it on a machine with one (benchmarks/gpu_check.sh)."
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_dir = random_7b(args.work)
    rows = []
    for attn, block, extra in VARIANTS:
        rows.append(measure(model_dir, attn, block, extra, args.steps))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(rows) + "\n")
    print(table(rows))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
