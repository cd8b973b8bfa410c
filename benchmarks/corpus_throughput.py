"""Corpus-stage throughput: zhtw's default pipeline vs. the one a user assembles from datatrove's stock parts.

Builds at least 50 MB of Chinese text (Traditional and Simplified, clean and spammy) from
../shared/data into JSONL files, then runs, each in its own process tree and on the same
number of workers:

* zhtw: `zhtw-corpus run` with the default config (clean + Chinese filters + script detection +
  OpenCC on Simplified documents + exact and MinHash character-5-gram dedup);
* stock: datatrove's JsonlReader → GopherQualityFilter + GopherRepetitionFilter (language
  cmn_Hani, i.e. spaCy + jieba words) → OpenCC s2twp on every document → stock MinHash dedup
  (word 5-grams with the same tokenizer) → JsonlWriter.

Reports input MB per second of wall time and per CPU-second (user + sys of the whole process
tree), the ratio zhtw/stock, the per-step time split, and writes JSON.

    pip install -e ".[bench]"    # spaCy + jieba: the stock pipeline's cmn_Hani word tokenizer
    python benchmarks/corpus_throughput.py --shared ../shared/data --workers 2
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SOURCES = [
    "corpus/train/ey_gazette.jsonl.gz",
    "corpus/train/msdocs_zhtw.jsonl.gz",
    "corpus/train/hongloumeng.jsonl.gz",
    "corpus/eval/zhcn_web_cc.jsonl.gz",
    "web/chinesewebtext_cc_2021-43.jsonl.gz",
    "corpus/eval/wiki_drcd.jsonl.gz",
    "corpus/eval/legal_mojlaw.jsonl.gz",
]


def build_input(shared: Path, out: Path, min_mb: float, n_files: int) -> dict:
    """Round-robin the shared corpora into `n_files` JSONL files until at least `min_mb` of text."""
    out.mkdir(parents=True, exist_ok=True)
    docs: list[str] = []
    for rel in SOURCES:
        with gzip.open(shared / rel, "rt", encoding="utf-8") as f:
            for line in f:
                obj = json.loads(line)
                text = obj.get("text") or obj.get("raw_content") or ""
                if text:
                    docs.append(text)
    total = sum(len(d.encode()) for d in docs)
    if total == 0:
        raise SystemExit(f"no text found under {shared}")
    files = [open(out / f"part-{i:02d}.jsonl", "w", encoding="utf-8") for i in range(n_files)]  # noqa: SIM115
    written = n = 0
    rep = 0
    while written < min_mb * 1e6:
        for d in docs:
            # later repetitions are exact duplicates, as in real crawls; both pipelines see the same
            files[n % n_files].write(json.dumps({"text": d, "id": f"{rep}-{n}"}, ensure_ascii=False) + "\n")
            written += len(d.encode())
            n += 1
        rep += 1
    for f in files:
        f.close()
    return {"documents": n, "text_mb": written / 1e6, "files": n_files}


def timed(cmd: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": proc.stdout}


def run_stock(input_dir: str, out: str, workers: int, tasks: int) -> None:
    """The stock pipeline (run in a child process by the benchmark)."""
    import opencc
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    lang = "cmn_Hani"
    mh = MinhashConfig()  # FineWeb: 5-grams, 14 buckets x 8 hashes
    if workers == 1:
        # datatrove's single-worker executor deep-copies the pipeline for every task, and after the
        # first task its cached cmn_Hani word tokenizer holds the jieba module, which cannot be
        # copied ("cannot pickle 'module' object"): one task reads every file instead.
        tasks = 1
    conv: dict = {}

    def s2twp(data, rank: int = 0, world_size: int = 1):
        if "cc" not in conv:
            conv["cc"] = opencc.OpenCC("s2twp")
        for doc in data:
            doc.text = conv["cc"].convert(doc.text)
            yield doc

    def ex(name: str, pipeline: list, n: int) -> LocalPipelineExecutor:
        return LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=n,
            workers=min(workers, n),
            logging_dir=f"{out}/logs/{name}",
            start_method="fork",
        )

    ex(
        "filter",
        [
            JsonlReader(input_dir, glob_pattern="*.jsonl", compression=None),
            GopherQualityFilter(language=lang),
            GopherRepetitionFilter(language=lang),
            s2twp,
            JsonlWriter(f"{out}/filtered", output_filename="${rank}.jsonl", compression=None),
            MinhashDedupSignature(f"{out}/sigs", config=mh, language=lang),
        ],
        tasks,
    ).run()
    ex("buckets", [MinhashDedupBuckets(f"{out}/sigs", f"{out}/buckets", config=mh)], mh.num_buckets).run()
    ex("cluster", [MinhashDedupCluster(f"{out}/buckets", f"{out}/clusters", config=mh)], 1).run()
    ex(
        "write",
        [
            JsonlReader(f"{out}/filtered", compression=None),
            MinhashDedupFilter(f"{out}/clusters"),
            JsonlWriter(f"{out}/shards", output_filename="${rank}.jsonl.gz"),
        ],
        tasks,
    ).run()


def _total(value: object) -> float:
    """A loaded counter's total: a summed stat, a dict with "total", or (one task, nothing summed) a number."""
    if hasattr(value, "total"):
        return value.total
    return value.get("total", 0) if isinstance(value, dict) else value


def step_times_stock(out: Path) -> list[dict]:
    from datatrove.utils.stats import PipelineStats

    rows = []
    for stage in ("filter", "buckets", "cluster", "write"):
        total = None
        for f in sorted((out / "logs" / stage / "stats").glob("*.json")):
            ps = PipelineStats.from_json(json.loads(f.read_text()))
            total = ps if total is None else total + ps
        for st in total.stats if total else []:
            c = {k: _total(v) for k, v in st.stats.items()}
            rows.append(
                {
                    "stage": stage,
                    "step": st.name,
                    "time_s": round(st.time_stats.total, 2),
                    "kept": int(c.get("forwarded", c.get("documents", 0))),
                    "dropped": int(c.get("dropped", 0)),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--workdir", default="build/benchmarks/corpus_throughput")
    ap.add_argument("--min-mb", type=float, default=50.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--json", default="build/benchmarks/corpus_throughput.json")
    ap.add_argument("--run-stock", nargs=2, metavar=("INPUT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.run_stock:
        run_stock(args.run_stock[0], args.run_stock[1], args.workers, args.files)
        return

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    info = build_input(Path(args.shared), work / "input", args.min_mb, args.files)
    input_mb = sum(p.stat().st_size for p in (work / "input").glob("*.jsonl")) / 1e6
    print(
        f"input: {info['documents']} documents, {info['text_mb']:.1f} MB of text, {input_mb:.1f} MB of JSONL, "
        f"{args.files} files, {args.workers} workers"
    )

    zhtw_cli = [sys.executable, "-m", "zhtw.corpus.cli"]
    ours = timed(
        [
            *zhtw_cli,
            "run",
            str(work / "input"),
            "--output",
            str(work / "zhtw"),
            "--workers",
            str(args.workers),
            "--no-progress",
        ]
    )
    stats = json.loads((work / "zhtw" / "stats.json").read_text())
    stock = timed(
        [
            sys.executable,
            __file__,
            "--workers",
            str(args.workers),
            "--files",
            str(args.files),
            "--run-stock",
            str(work / "input"),
            str(work / "stock"),
        ]
    )

    results = {}
    for name, r in (("zhtw", ours), ("stock", stock)):
        results[name] = {
            "wall_s": round(r["wall_s"], 2),
            "cpu_s": round(r["cpu_s"], 2),
            "mb_per_s": round(input_mb / r["wall_s"], 3),
            "mb_per_cpu_s": round(input_mb / r["cpu_s"], 3),
        }
    stock_rows = step_times_stock(work / "stock")
    stock_written = sum(r["kept"] for r in stock_rows if "MinHash stage 4" in r["step"])
    results["zhtw"]["documents_written"] = stats["documents"]["written"]
    results["zhtw"]["dropped"] = stats["documents"]["dropped"]
    results["stock"]["documents_written"] = stock_written
    speedup_wall = results["stock"]["wall_s"] / results["zhtw"]["wall_s"]
    speedup_cpu = results["stock"]["cpu_s"] / results["zhtw"]["cpu_s"]

    print()
    print(f"{'pipeline':<10}{'wall s':>9}{'CPU s':>9}{'MB/s':>9}{'MB/CPU-s':>10}{'docs out':>10}")
    for name in ("zhtw", "stock"):
        r = results[name]
        print(
            f"{name:<10}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['mb_per_s']:>9.2f}{r['mb_per_cpu_s']:>10.2f}"
            f"{r['documents_written']:>10}"
        )
    print(
        f"zhtw vs stock: {speedup_wall:.2f}x wall throughput, {speedup_cpu:.2f}x per CPU-second "
        f"(targets: >= 3x, and >= 3 MB per CPU-second (issue 12): {results['zhtw']['mb_per_cpu_s']:.2f})"
    )

    print("\nzhtw per-step time (s, summed over tasks):")
    zrows = [{"stage": s["stage"], "step": s["step"], "time_s": s["time_s"]} for s in stats["steps"]]
    tot = sum(r["time_s"] for r in zrows) or 1.0
    for r in zrows:
        print(f"  {r['stage']:<16}{r['step'][:40]:<42}{r['time_s']:>8.2f}  {100 * r['time_s'] / tot:5.1f}%")
    print("stock per-step time (s, summed over tasks):")
    tot = sum(r["time_s"] for r in stock_rows) or 1.0
    for r in stock_rows:
        print(
            f"  {r['stage']:<16}{r['step'][:40]:<42}{r['time_s']:>8.2f}  {100 * r['time_s'] / tot:5.1f}%"
            f"  kept {r['kept']} dropped {r['dropped']}"
        )

    out = {
        "input": {**info, "jsonl_mb": round(input_mb, 2)},
        "workers": args.workers,
        "results": results,
        "speedup_wall": round(speedup_wall, 3),
        "speedup_cpu": round(speedup_cpu, 3),
        "zhtw_steps": zrows,
        "stock_steps": stock_rows,
        "targets": {"speedup_min": 3.0, "mb_per_cpu_s_min": 2.0},
        "targets_met": speedup_wall >= 3.0 and results["zhtw"]["mb_per_cpu_s"] >= 3.0,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
