"""`zhtw-corpus`: raw web text (WET/WARC/JSONL/Parquet/text) to clean Taiwan-Traditional shards."""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

from zhtw.common.cli import ArgumentParser, add_common_options, add_workers_option, positive_int, run_main
from zhtw.common.fsutil import show_path
from zhtw.corpus.config import load_config
from zhtw.corpus.pipeline import (
    RunError,
    RunPlan,
    SlurmOptions,
    build_stages,
    collect_stats,
    dropped_examples,
    format_summary,
    make_slurm_executors,
    open_output,
    plan_run,
    run_local,
    write_stats,
)

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
    p = ArgumentParser(
        prog="zhtw-corpus",
        description="Stage 1 of zhtw: clean, filter, detect script, convert Simplified to Taiwan "
        "Traditional (OpenCC), deduplicate (exact and MinHash) and shard Chinese web text.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(p, quiet=False)
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
    add_workers_option(r, default=None, help="parallel processes (default: every CPU core)")
    r.add_argument(
        "--tasks",
        type=positive_int,
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
    r.add_argument(
        "--slurm-cpus-per-task", type=positive_int, default=1, help="CPUs per Slurm task (default 1)"
    )
    r.add_argument(
        "--slurm-mem-per-cpu-gb", type=positive_int, default=2, help="memory per CPU in GB (default 2)"
    )
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
        "--keep-dropped",
        action="store_true",
        help="write every dropped document, with its drop_reason and drop_step, to "
        "OUTPUT/dropped/<step>/ (same as output.keep_dropped: true in the config)",
    )
    r.add_argument(
        "--keep-work", action="store_true", help="keep the intermediates in OUTPUT/_work after a finished run"
    )
    r.add_argument("--quiet", "-q", "--no-progress", dest="quiet", action="store_true", help="no progress bars")
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
    s.add_argument(
        "--examples",
        type=positive_int,
        metavar="N",
        help="also print N dropped documents per drop reason (needs a run with --keep-dropped)",
    )
    return p


def cmd_run(args: argparse.Namespace) -> int:
    if args.executor == "slurm" and not args.slurm_partition:
        raise RunError("--executor slurm needs --slurm-partition NAME")
    cfg = load_config(args.config)
    if args.keep_dropped:
        cfg.output.keep_dropped = True
    plan = plan_run(args.inputs, args.output, cfg, workers=args.workers, tasks=args.tasks)
    with open_output(plan, overwrite=args.overwrite):  # the output's lock is held until the run ends
        skipped = f" ({len(plan.skipped)} entries skipped unopened)" if plan.skipped else ""
        print(
            f"zhtw-corpus: {len(plan.files)} input files{skipped}, {plan.tasks} tasks, {plan.workers} workers "
            f"-> {show_path(plan.output)}"
        )
        if args.executor == "slurm":
            return submit_slurm(plan, args)
        stats = run_local(
            plan,
            executor=args.executor,
            progress=not args.quiet,
            keep_work=args.keep_work,
            verbose=args.verbose,
        )
    print(format_summary(stats))
    print(f"shards: {show_path(plan.output / 'shards')}\nstats:  {show_path(plan.output / 'stats.json')}")
    return exit_code(stats, strict=args.strict)


def submit_slurm(plan: RunPlan, args: argparse.Namespace) -> int:
    """Submit the stages as Slurm array jobs (the lock covers submission only: jobs run later)."""
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
    if not (out / "run.json").is_file():
        raise RunError(f"{show_path(out)} is not a zhtw-corpus output directory (no run.json)")
    stats = _read_stats(out / "stats.json")
    if stats is None:  # e.g. after Slurm jobs, or a damaged file: build it from the stages' saved stats
        stats = collect_stats(out)
        write_stats(out, stats)
    print(json.dumps(stats, indent=2, ensure_ascii=False) if args.json else format_summary(stats))
    if args.examples:
        print_examples(out, args.examples)
    return 0


def print_examples(out: Path, per_reason: int, width: int = 160) -> None:
    """N dropped documents per reason, one line each: step, reason, id, url and the text's start."""
    if not (out / "dropped").is_dir():
        raise RunError(
            f"{show_path(out)} holds no dropped documents: run with --keep-dropped "
            "(or output.keep_dropped: true) to keep them"
        )
    for reason, records in dropped_examples(out, per_reason).items():
        print(f"\n== {reason} ==")
        for r in records:
            text = " ".join(str(r.get("text", "")).split())[:width]
            print(f"[{r.get('drop_step')}] {r.get('id')} {r.get('url') or ''}\n    {text}")


def _read_stats(path: Path) -> dict | None:
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stats if isinstance(stats, dict) and "documents" in stats else None


# What to do about the file-system errors a run can hit while writing its output.
_OS_ERROR_FIXES = {
    errno.ENOSPC: "the disk is full: free space (or choose an --output on another disk) and rerun the "
    "same command to resume",
    errno.EDQUOT: "the disk quota is used up: free space and rerun the same command to resume",
    errno.EACCES: "permission denied: choose an --output you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted: choose an --output you can write to",
    errno.EROFS: "read-only file system: choose an --output on a writable disk",
    errno.ENOTDIR: "part of the path is a file, not a directory: choose another --output",
    errno.EISDIR: "a directory is in the way of a file: choose another --output",
    errno.ENOENT: "no such file or directory: check the path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter --output",
    errno.EMFILE: "too many open files: raise `ulimit -n` or use fewer --workers",
}


def describe_os_error(e: OSError) -> str:
    """One line for a file-system error: the path, the system's words and what to do."""
    where = f"{show_path(e.filename)}: " if e.filename is not None else ""
    fix = _OS_ERROR_FIXES.get(e.errno or 0, "fix the cause and rerun the same command to resume")
    return f"{where}{e.strerror or e}; {fix}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `zhtw-corpus`: 0 done, 1 refused, 2 usage or nothing readable, 3 unreadable units
    with --strict, 130 interrupted."""
    return run_main(
        "zhtw-corpus", build_parser(), _dispatch, argv, describe_os_error=describe_os_error,
        interrupted="; rerun the same command to resume (finished tasks are kept)",
    )


def _dispatch(args: argparse.Namespace) -> int:
    return cmd_run(args) if args.command == "run" else cmd_stats(args)


if __name__ == "__main__":
    raise SystemExit(main())
