"""Export benchmark: time and peak memory of `zhtw-export` on a 7B-shaped model, GGUF vs transformers tokens/s.

A Llama-2-7B-shaped prepared model (hidden 4096, MLP 11008, 32 heads, untied head, 61,440 embedding rows) is
written straight to safetensors shards with random weights (one random matrix per distinct shape, reused:
the merge's cost does not depend on the values), with a LoRA r=32 adapter on every linear layer plus trained
rows for the 29,440 new tokens in the embedding and the head, in the exact tensor layout `zhtw-pretrain
train` saves. The export runs in a fresh process; its peak RSS per phase comes from zhtw_export.json and the
child's ru_maxrss. The tokenizer is a small extended tokenizer (the demo's) with the embedding padded to
61,440 rows: the vocabulary size, not its content, sets the cost.

Where llama-cpp-python is installed, tokens/s of greedy generation are compared on the exported model (GGUF
q8_0 and f16 via llama.cpp vs the bf16 safetensors via transformers), CPU, same thread count.

    .venv/bin/python benchmarks/export.py                       # 32 layers (needs ~40 GB disk, ~16 GB RAM)
    .venv/bin/python benchmarks/export.py --layers 8 --verify export
Writes build/benchmarks/export.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHAPE = {
    "hidden": 4096,
    "intermediate": 11008,
    "heads": 32,
    "kv_heads": 32,
    "rows": 61440,
    "base_rows": 32000,
}


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def build_prepared(root: Path, layers: int, rank: int) -> tuple[Path, Path]:
    """Write the 7B-shaped prepared model dir and its adapter dir; return their paths."""
    import torch
    from safetensors.torch import save_file

    from zhtw.pretrain.demo import english_texts, make_tiny_llama, train_base_tokenizer
    from zhtw.pretrain.prepare import prepare_model
    from zhtw.tokenizer.cli import main as tok_main

    h, m, rows, n_base = SHAPE["hidden"], SHAPE["intermediate"], SHAPE["rows"], SHAPE["base_rows"]
    # a real extended tokenizer + prepare metadata from a tiny model, then the big weights beside them
    small = root / "small"
    train_base_tokenizer(small / "base", english_texts(2000))
    make_tiny_llama(small / "base", 384)
    sample = REPO / "corpus" / "sample" / "sample.warc.wet.gz"
    tok_main(["build", "--base", str(small / "base"), "--corpus", str(sample), "--output", str(small / "tok"),
              "--vocab-size", "640", "--quiet", "--num-threads", "1"])  # fmt: skip
    prepare_model(str(small / "base"), str(small / "tok"), str(small / "prepared"), log=lambda _: None)
    prepared = root / "prepared"
    prepared.mkdir()
    for f in (small / "prepared").iterdir():
        if f.suffix != ".safetensors" and f.name != "config.json":
            shutil.copy(f, prepared / f.name)
    meta = json.loads((prepared / "zhtw_prepare.json").read_text())
    meta.update(embedding_rows=rows, base_vocab_size=n_base, new_token_ids=[n_base, rows],
                tie_word_embeddings=False, dtype="bfloat16")  # fmt: skip
    (prepared / "zhtw_prepare.json").write_text(json.dumps(meta))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h, "intermediate_size": m,
        "num_hidden_layers": layers, "num_attention_heads": SHAPE["heads"], "num_key_value_heads": SHAPE["kv_heads"],
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "vocab_size": rows, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "dtype": "bfloat16",
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    }  # fmt: skip
    (prepared / "config.json").write_text(json.dumps(config, indent=1))

    g = torch.Generator().manual_seed(0)
    cache: dict[tuple[int, ...], Any] = {}

    def rand(*shape: int, std: float = 0.02) -> Any:
        if shape not in cache:
            cache[shape] = (torch.randn(shape, generator=g) * std).to(torch.bfloat16)
        return cache[shape]

    linear = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, h), "self_attn.v_proj": (h, h),
              "self_attn.o_proj": (h, h), "mlp.gate_proj": (m, h), "mlp.up_proj": (m, h), "mlp.down_proj": (h, m)}  # fmt: skip
    weight_map: dict[str, str] = {}
    shards = [{"model.embed_tokens.weight": rand(rows, h)}]
    for i in range(layers):
        shard = {f"model.layers.{i}.{k}.weight": rand(*s) for k, s in linear.items()}
        shard[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
        shard[f"model.layers.{i}.post_attention_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
        shards.append(shard)
    shards.append({"model.norm.weight": torch.ones(h, dtype=torch.bfloat16), "lm_head.weight": rand(rows, h)})
    total = 0
    for n, shard in enumerate(shards):
        name = f"model-{n + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: v.clone() for k, v in shard.items()}, str(prepared / name), metadata={"format": "pt"})
        for k, v in shard.items():
            weight_map[k] = name
            total += v.numel() * 2
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (prepared / "model.safetensors.index.json").write_text(json.dumps(index))

    adapter = root / "adapter"
    adapter.mkdir()
    tensors = {}
    for i in range(layers):
        for k, (out_f, in_f) in linear.items():
            base = f"base_model.model.model.layers.{i}.{k}"
            tensors[f"{base}.lora_A.weight"] = rand(rank, in_f, std=0.01).float()
            tensors[f"{base}.lora_B.weight"] = rand(out_f, rank, std=0.01).float()
    for mod in ("model.embed_tokens", "lm_head"):
        tensors[f"base_model.model.{mod}.token_adapter.trainable_tokens_delta"] = rand(
            rows - n_base, h
        ).float()
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    ids = list(range(n_base, rows))
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.05,
        "target_modules": [k.split(".")[1] for k in linear], "bias": "none", "use_dora": False, "use_rslora": False,
        "fan_in_fan_out": False, "trainable_token_indices": {"embed_tokens": ids, "lm_head": ids},
        "base_model_name_or_path": str(prepared), "modules_to_save": None,
    }))  # fmt: skip
    return prepared, adapter


def run_export(
    prepared: Path, adapter: Path, out: Path, verify: str, gguf: str, threads: int
) -> dict[str, Any]:
    """Run zhtw-export in a fresh process; wall time, its per-phase peak RSS and the child's max RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "zhtw.pretrain.export", "--model", str(prepared), "--adapter", str(adapter),
         "--output", str(out), "--dtype", "bf16", "--gguf", gguf, "--verify", verify, "--overwrite"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"zhtw-export failed:\n{proc.stderr[-3000:]}")
    meta = json.loads((out / "zhtw_export.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "merge_s": meta["merge"]["seconds"],
        "verify_s": meta["verify"].get("seconds"),
        "gguf_s": (meta.get("gguf") or {}).get("seconds"),
        "peak_rss_mb": meta["peak_rss_mb"],
        "child_max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "safetensors_gb": round(meta["merge"]["bytes"] / 1e9, 2),
        "shards": len(meta["merge"]["files"]),
        "gguf_gb": round((meta.get("gguf") or {}).get("bytes", 0) / 1e9, 2),
        "verify": {
            k: meta["verify"].get(k) for k in ("dtype", "max_abs_diff", "tolerance", "passed", "skipped")
        },
    }


def tokens_per_second(out: Path, gguf_file: Path, threads: int, new_tokens: int) -> dict[str, Any] | str:
    """Greedy generation speed, llama.cpp (GGUF) vs transformers (safetensors), same prompt and threads."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return "skipped: llama-cpp-python is not installed (`pip install llama-cpp-python`)"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(out)
    prompt = "臺灣位於東亞，首都是臺北市。"
    ids = tok(prompt, return_tensors="pt")
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    with torch.no_grad():
        model.generate(**ids, max_new_tokens=2, do_sample=False)
        t = time.perf_counter()
        model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        hf = new_tokens / (time.perf_counter() - t)
    del model
    llm = Llama(model_path=str(gguf_file), n_ctx=256, n_threads=threads, verbose=False)
    llm(prompt, max_tokens=2, temperature=0.0)
    t = time.perf_counter()
    res = llm(prompt, max_tokens=new_tokens, temperature=0.0)
    n = res["usage"]["completion_tokens"]
    cpp = n / (time.perf_counter() - t)
    return {"transformers_bf16_tok_s": round(hf, 3), "llama_cpp_tok_s": round(cpp, 3), "ratio": round(cpp / hf, 2),
            "gguf": gguf_file.name, "threads": threads, "new_tokens": new_tokens}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=32, help="decoder layers (32 = Llama-2-7B)")
    p.add_argument("--rank", type=int, default=32, help="LoRA rank")
    p.add_argument("--verify", default="none", choices=["none", "export", "fp32", "auto"],
                   help="reload check of the export (bf16 verification of 32 layers takes long on 2 cores)")  # fmt: skip
    p.add_argument("--gguf", default="q8_0", choices=["q8_0", "f16", "none"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--work", default=str(REPO / "build" / "benchmarks" / "export_work"))
    p.add_argument("--keep", action="store_true", help="keep the multi-GB work directory")
    args = p.parse_args()

    params = SHAPE["rows"] * SHAPE["hidden"] * 2 + args.layers * (
        4 * SHAPE["hidden"] ** 2 + 3 * SHAPE["hidden"] * SHAPE["intermediate"]
    )
    bf16_gb = params * 2 / 1e9
    work = Path(args.work)
    need_disk = bf16_gb * (2.0 + (0.55 if args.gguf == "q8_0" else 1.0 if args.gguf == "f16" else 0)) + 2
    free_disk = shutil.disk_usage(work.parent if work.parent.exists() else REPO).free / 1e9
    need_mem = (bf16_gb if args.verify != "none" else 4.0) * 1e9
    result: dict[str, Any] = {
        "shape": {**SHAPE, "layers": args.layers},
        "parameters": params,
        "bf16_gb": round(bf16_gb, 2),
    }
    if free_disk < need_disk or _mem_available() < need_mem:
        msg = (f"skipped: needs ~{need_disk:.0f} GB disk and ~{need_mem / 1e9:.0f} GB free memory, have "
               f"{free_disk:.0f} GB and {_mem_available() / 1e9:.0f} GB; rerun with fewer --layers")  # fmt: skip
        print(msg)
        result["skipped"] = msg
    else:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        t = time.perf_counter()
        prepared, adapter = build_prepared(work, args.layers, args.rank)
        result["build_s"] = round(time.perf_counter() - t, 1)
        result["export"] = run_export(
            prepared, adapter, work / "export", args.verify, args.gguf, args.threads
        )
        gguf_file = work / "export" / f"model-{args.gguf}.gguf"
        result["tokens_per_second"] = (
            tokens_per_second(work / "export", gguf_file, args.threads, args.new_tokens)
            if args.gguf != "none" else "skipped: --gguf none"
        )  # fmt: skip
        if not args.keep:
            shutil.rmtree(work)
    import platform

    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    dest = REPO / "build" / "benchmarks" / "export.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=1) + "\n")
    e = result.get("export")
    if e:
        rss = e["peak_rss_mb"]
        rows = [
            ("model", f"Llama-2-7B shape, {args.layers} layers, {params / 1e9:.2f} B params, {result['bf16_gb']} GB bf16"),
            ("export wall time (s)", e["wall_s"]),
            ("merge (s) / shards", f"{e['merge_s']} / {e['shards']} ({e['safetensors_gb']} GB)"),
            ("reload check (s)", f"{e['verify_s']} ({e['verify']})"),
            (f"GGUF {args.gguf} (s) / size", f"{e['gguf_s']} / {e['gguf_gb']} GB"),
            ("peak RSS after merge (MB)", rss.get("merge")),
            ("peak RSS after reload check (MB)", rss.get("verify")),
            ("peak RSS after GGUF (MB)", rss.get("gguf")),
            ("tokens/s", result["tokens_per_second"]),
        ]  # fmt: skip
        for k, v in rows:
            print(f"| {k} | {v} |")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
