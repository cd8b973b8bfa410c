"""S²-Attn speed: attention forward + backward against full causal sdpa, and one whole training step.

Attention part: batch 1, 32 heads, head dim 128 (override with --heads/--head-dim), group ratio 1/4,
at 1k, 2k, 4k and 8k tokens. Each contender goes through transformers' attention-function calling
convention: full = ``sdpa_attention_forward`` (the built-in "sdpa" path), S²-Attn = the registered
``s2_attention_forward`` in both variants. Runs are interleaved; the best of N and the median are reported,
because these machines are shared and noisy. The FLOP floor for S²-Attn is the group ratio (0.25x).

Training-step part: one forward + backward + AdamW step of a small random Llama at --step-len tokens,
with attn_implementation "sdpa" and "s2attn".

    .venv/bin/python benchmarks/s2attn.py                     # CPU, about 3-4 minutes on 2 cores
    .venv/bin/python benchmarks/s2attn.py --device cuda       # GPU: full = sdpa's flash kernel (bf16)

Prints a table and writes build/benchmarks/s2attn.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from zhtw.pretrain.s2attn import enable_s2_attention, group_size, s2_attention_forward

REPO = Path(__file__).resolve().parents[1]


@dataclass
class _Module:
    """What an attention function reads from its module: training flag and GQA grouping."""

    training: bool = True
    num_key_value_groups: int = 1
    layer_idx: int = 0
    is_causal: bool = True


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _attention_step(fn: Callable, module: _Module, q, k, v, grad) -> Callable[[], None]:
    def step() -> None:
        for t in (q, k, v):
            t.grad = None
        out, _ = fn(module, q, k, v, None, scaling=q.shape[-1] ** -0.5)
        out.backward(grad)

    return step


def _times(steps: dict[str, Callable[[], None]], repeats: int, device: str) -> dict[str, dict[str, float]]:
    """Best and median wall time, and best process CPU time, of each step.

    Runs are interleaved so drifting load hits everyone alike. The best of N is the headline (load
    from other processes only ever adds time); CPU seconds are less sensitive to other processes than
    wall time on shared cores.
    """
    for step in steps.values():  # warm-up
        step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            _sync(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: {"best": min(wall[name]), "median": statistics.median(wall[name]), "cpu_best": min(cpu[name])}
        for name in steps
    }


def bench_attention(
    lengths: list[int], heads: int, head_dim: int, ratio: float, repeats: int, device: str, dtype: torch.dtype
) -> list[dict]:
    rows = []
    module = _Module()
    for seq in lengths:
        gen = torch.Generator(device=device).manual_seed(seq)
        q, k, v = (
            torch.randn(1, heads, seq, head_dim, generator=gen, device=device, dtype=dtype).requires_grad_()
            for _ in range(3)
        )
        grad = torch.randn(1, seq, heads, head_dim, generator=gen, device=device, dtype=dtype)  # [B,S,H,D]
        steps = {
            "full_sdpa": _attention_step(sdpa_attention_forward, module, q, k, v, grad),
            "s2_noleak": _attention_step(
                lambda *a, **kw: s2_attention_forward(*a, **kw, group_ratio=ratio, variant="noleak"),
                module,
                q,
                k,
                v,
                grad,
            ),
            "s2_roll": _attention_step(
                lambda *a, **kw: s2_attention_forward(*a, **kw, group_ratio=ratio, variant="roll"),
                module,
                q,
                k,
                v,
                grad,
            ),
        }
        n_runs = repeats if seq > 2048 else max(repeats, 7)  # short runs are cheap: take more
        t = _times(steps, n_runs, device)
        row = {"tokens": seq, "group_size": group_size(seq, ratio), "runs": n_runs, "times_s": t}
        for variant in ("noleak", "roll"):
            for stat in ("best", "median", "cpu_best"):
                row[f"{variant}_ratio_{stat}"] = t[f"s2_{variant}"][stat] / t["full_sdpa"][stat]
        rows.append(row)
        print(
            f"{seq:>6} {row['group_size']:>6} {t['full_sdpa']['best']:>9.3f} {t['s2_noleak']['best']:>9.3f} "
            f"{t['s2_roll']['best']:>9.3f} {row['noleak_ratio_best']:>8.3f}x {row['roll_ratio_best']:>8.3f}x "
            f"{row['noleak_ratio_median']:>10.3f}x {row['noleak_ratio_cpu_best']:>10.3f}x",
            flush=True,
        )
        del q, k, v, grad, steps
    return rows


def bench_training_step(seq: int, repeats: int, device: str, dtype: torch.dtype) -> dict:
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=seq,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (1, seq), device=device)
    models, steps = {}, {}
    for name in ("full_sdpa", "s2_noleak"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(device=device, dtype=dtype).train()
        if name == "s2_noleak":
            enable_s2_attention(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model: LlamaForCausalLM = model, optimizer: torch.optim.Optimizer = optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()

        models[name], steps[name] = model, step
    repeats = max(repeats, 8)  # whole steps are noisier than the attention alone
    t = _times(steps, repeats, device)
    params = sum(p.numel() for p in models["full_sdpa"].parameters())
    result = {
        "tokens": seq,
        "params": params,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads,
        "times_s": t,
        "ratio_best": t["s2_noleak"]["best"] / t["full_sdpa"]["best"],
        "ratio_median": t["s2_noleak"]["median"] / t["full_sdpa"]["median"],
        "ratio_cpu_best": t["s2_noleak"]["cpu_best"] / t["full_sdpa"]["cpu_best"],
    }
    print(
        f"training step, {params / 1e6:.1f}M-param Llama ({config.num_hidden_layers} layers, hidden "
        f"{config.hidden_size}, {config.num_attention_heads} heads), {seq} tokens, best of {repeats}: "
        f"full {t['full_sdpa']['best']:.3f} s, S²-Attn {t['s2_noleak']['best']:.3f} s, "
        f"ratio {result['ratio_best']:.3f}x (median {result['ratio_median']:.3f}x, "
        f"CPU time {result['ratio_cpu_best']:.3f}x)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-len", type=int, default=4096, help="tokens for the training-step benchmark")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "benchmarks" / "s2attn.json")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))

    print(
        f"attention forward+backward, batch 1, {args.heads} heads, head dim {args.head_dim}, ratio {args.ratio}, "
        f"{dtype}, {args.device}, torch threads {torch.get_num_threads()}; best of N runs (N = {args.repeats}, "
        f"at least 7 up to 2k tokens); ratio = S²-Attn / full, FLOP floor {args.ratio}"
    )
    print(
        f"{'tokens':>6} {'G':>6} {'full s':>9} {'noleak s':>9} {'roll s':>9} {'noleak':>9} {'roll':>9} "
        f"{'noleak med':>11} {'noleak cpu':>11}"
    )
    attention = bench_attention(
        args.lengths, args.heads, args.head_dim, args.ratio, args.repeats, args.device, dtype
    )
    step = bench_training_step(args.step_len, args.repeats, args.device, dtype)

    result = {
        "benchmark": "s2attn",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "dtype": str(dtype).removeprefix("torch."),
        "heads": args.heads,
        "head_dim": args.head_dim,
        "group_ratio": args.ratio,
        "repeats": args.repeats,
        "attention_forward_backward": attention,
        "training_step": step,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
