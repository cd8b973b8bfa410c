"""`zhtw-corpus`: raw web text (WET/WARC/JSONL/Parquet/text) to clean Taiwan-Traditional shards."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zhtw.corpus.config import ConfigError, load_config
from zhtw.corpus.pipeline import (
    RunError,
    SlurmOptions,
    build_stages,
    check_output_dir,
    collect_stats,
    format_summary,
    make_slurm_executors,
    plan_run,
    run_local,
    write_stats,
)
from zhtw.corpus.readers import InputError

EPILOG = """\
examples:
  zhtw-corpus run corpus/sample/sample.warc.wet.gz --output build/demo/corpus
  zhtw-corpus run 'crawl/*.warc.wet.gz' dumps/ --output out/zhtw --config my.yaml --workers 16
  zhtw-corpus run crawl/ --output out/zhtw --executor slurm --slurm-partition cpu
  zhtw-corpus stats out/zhtw

The default settings are in corpus/default.yaml (zhtw/corpus/default.yaml when installed); copy it
and change what you need. Rerunning the same command resumes a killed run; a finished run reruns
as a no-op.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhtw-corpus",
        description="Stage 1 of zhtw: clean, filter, detect script, convert Simplified to Taiwan "
        "Traditional (OpenCC), deduplicate (exact and MinHash) and shard Chinese web text.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "run",
        help="process inputs into shards + stats.json",
        description="Process INPUT files, directories or globs (.warc.wet.gz, .warc.gz, .jsonl[.gz], "
        ".parquet, .txt[.gz]) into OUTPUT/shards and OUTPUT/stats.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="input files, directories (searched recursively) or globs"
    )
    r.add_argument(
        "--output",
        "-o",
        required=True,
        help="output directory (created; holds shards/, stats.json, run.json)",
    )
    r.add_argument(
        "--config", "-c", help="YAML config overriding corpus/default.yaml; unknown keys are errors"
    )
    r.add_argument(
        "--workers", "-w", type=int, default=None, help="parallel processes (default: every CPU core)"
    )
    r.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="tasks for the per-file stages (default: one per input file, at most 4 per worker); "
        "fixed for the life of an output directory",
    )
    r.add_argument(
        "--executor",
        choices=["local", "ray", "slurm"],
        default="local",
        help="local processes (default), a Ray cluster (ray.init() finds it, or starts a local one), "
        "or Slurm array jobs (submitted with sbatch; run `zhtw-corpus stats` when they finish)",
    )
    r.add_argument("--slurm-partition", help="Slurm partition (required with --executor slurm)")
    r.add_argument("--slurm-time", default="24:00:00", help="Slurm time limit per job (default 24:00:00)")
    r.add_argument("--slurm-cpus-per-task", type=int, default=1, help="CPUs per Slurm task (default 1)")
    r.add_argument("--slurm-mem-per-cpu-gb", type=int, default=2, help="memory per CPU in GB (default 2)")
    r.add_argument("--slurm-venv", help="virtualenv to activate in Slurm jobs (default: the current one)")
    r.add_argument(
        "--strict",
        action="store_true",
        help="exit non-zero if any input unit was unreadable (default: only if none was readable)",
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="discard an existing output directory made with other inputs/settings",
    )
    r.add_argument(
        "--keep-work", action="store_true", help="keep the intermediates in OUTPUT/_work after a finished run"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="show datatrove's own logs (otherwise in OUTPUT/_work/logs/console.log)",
    )

    s = sub.add_parser(
        "stats", help="print the summary of a run", description="Print the summary table of a run."
    )
    s.add_argument("output", help="a zhtw-corpus output directory")
    s.add_argument("--json", action="store_true", help="print stats.json instead of the table")
    return p


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    plan = plan_run(args.inputs, args.output, cfg, workers=args.workers, tasks=args.tasks)
    check_output_dir(plan, overwrite=args.overwrite)
    print(
        f"zhtw-corpus: {len(plan.files)} input files, {plan.tasks} tasks, {plan.workers} workers -> {plan.output}"
    )
    if args.executor == "slurm":
        if not args.slurm_partition:
            raise RunError("--executor slurm needs --slurm-partition NAME")
        opts = SlurmOptions(
            partition=args.slurm_partition,
            time=args.slurm_time,
            cpus_per_task=args.slurm_cpus_per_task,
            mem_per_cpu_gb=args.slurm_mem_per_cpu_gb,
            venv_path=args.slurm_venv or sys.prefix,
        )
        executors = make_slurm_executors(plan, build_stages(plan, progress=False), opts)
        executors[-1].run()  # launches the whole chain of dependencies
        print(f"submitted {len(executors)} Slurm jobs; when they finish run: zhtw-corpus stats {plan.output}")
        return 0
    stats = run_local(
        plan,
        executor=args.executor,
        progress=not args.no_progress,
        keep_work=args.keep_work,
        verbose=args.verbose,
    )
    print(format_summary(stats))
    print(f"shards: {plan.output / 'shards'}\nstats:  {plan.output / 'stats.json'}")
    return exit_code(stats, strict=args.strict)


def exit_code(stats: dict, strict: bool) -> int:
    d = stats["documents"]
    n_unreadable = sum(d["unreadable"].values())
    if d["read"] - n_unreadable <= 0:
        print("zhtw-corpus: no document could be read from the inputs", file=sys.stderr)
        return 2
    if strict and n_unreadable:
        print(f"zhtw-corpus: {n_unreadable} unreadable input units (--strict)", file=sys.stderr)
        return 3
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if not (out / "run.json").exists():
        raise RunError(f"{out} is not a zhtw-corpus output directory (no run.json)")
    stats_file = out / "stats.json"
    if stats_file.exists():
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
    else:  # e.g. after Slurm jobs: build it from the stages' saved stats
        stats = collect_stats(out)
        write_stats(out, stats)
    print(json.dumps(stats, indent=2, ensure_ascii=False) if args.json else format_summary(stats))
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = cmd_run(args) if args.command == "run" else cmd_stats(args)
    except (ConfigError, InputError, RunError) as e:
        print(f"zhtw-corpus: error: {e}", file=sys.stderr)
        code = 1
    raise SystemExit(code)


if __name__ == "__main__":
    main()
