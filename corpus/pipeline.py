"""The corpus stage as datatrove stages: filter, exact dedup, near dedup (MinHash), write.

Stages (each a datatrove executor; completed tasks are recorded per rank, so a rerun after a kill
finishes the remaining tasks and a finished run reruns as a no-op):

1. ``filter``: read → clean → quality filters → script detection/conversion → exact-dedup
   signatures → intermediate JSONL (one file per rank)
2. ``exact_find``: datatrove's exact-duplicate finder (1 task)
3. ``minhash_sig``: re-read → drop exact duplicates → MinHash signatures on character n-grams
4. ``minhash_buckets``: datatrove's LSH buckets (one task per bucket)
5. ``minhash_cluster``: datatrove's clustering (1 task)
6. ``write``: re-read → drop exact and near duplicates → output shards

Layout of the output directory: ``shards/`` (the data), ``stats.json``, ``run.json`` (what was
run, for reruns), ``_work/`` (intermediates and datatrove's logs/completions).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import ExactDedupFilter, ExactFindDedups
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.pipeline.writers.parquet import ParquetWriter
from datatrove.utils.stats import PipelineStats
from tqdm import tqdm

from zhtw.corpus.config import CorpusConfig, config_to_dict
from zhtw.corpus.readers import expand_inputs
from zhtw.corpus.steps import (
    CharMinhashSignature,
    CleanStep,
    ExactSignaturePassthrough,
    FilterStep,
    RankFileReader,
    ScriptStep,
    Tally,
    ZhtwReader,
    exact_dedup_config,
    intermediate_adapter,
    iter_issue_files,
    minhash_config,
    output_adapter,
)
from zhtw.corpus.text import FILTERS

STATS_VERSION = 1
STAGE_ORDER = ["filter", "exact_find", "minhash_sig", "minhash_buckets", "minhash_cluster", "write"]
MAX_ISSUES_IN_STATS = 1000


class RunError(Exception):
    """A problem with the run's inputs or output directory; the message says what to do."""


@dataclass
class RunPlan:
    """Everything that decides a run's output: reruns with a different plan are refused."""

    inputs: list[str]
    files: list[str]
    output: Path
    cfg: CorpusConfig
    tasks: int
    workers: int

    @property
    def work(self) -> Path:
        return self.output / "_work"

    def fingerprint(self) -> dict[str, Any]:
        return {
            "files": [{"path": f, "size": _size(f)} for f in self.files],
            "config": config_to_dict(self.cfg),
            "tasks": self.tasks,
        }


@dataclass
class Stage:
    name: str
    pipeline: list[PipelineStep]
    tasks: int


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def plan_run(
    inputs: list[str],
    output: str | Path,
    cfg: CorpusConfig,
    workers: int | None = None,
    tasks: int | None = None,
) -> RunPlan:
    """Resolve inputs and task counts. Tasks default to one per input file, at most 4 per worker."""
    files = expand_inputs(inputs)
    workers = workers or os.cpu_count() or 1
    if tasks is None:
        tasks = max(1, min(len(files), 4 * workers))
    return RunPlan(
        inputs=list(inputs), files=files, output=Path(output).resolve(), cfg=cfg, tasks=tasks, workers=workers
    )


def build_stages(plan: RunPlan, progress: bool = True) -> list[Stage]:
    """The six stages (fewer when dedup is switched off), as datatrove pipelines."""
    cfg, work = plan.cfg, plan.work
    filtered = str(work / "filtered")
    exact_sigs, exact_dups = str(work / "exact_sigs"), str(work / "exact_dups")
    mh_sigs, mh_buckets, mh_clusters = (
        str(work / "mh_sigs"),
        str(work / "mh_buckets"),
        str(work / "mh_clusters"),
    )
    dd = cfg.dedup
    mh_cfg = minhash_config(dd.ngram, dd.num_buckets, dd.hashes_per_bucket, dd.seed)
    ex_cfg = exact_dedup_config()

    first: list[PipelineStep] = [
        ZhtwReader(plan.files, cfg.input, issues_dir=str(work / "issues"), progress=progress),
        CleanStep(cfg.clean),
        *[FilterStep(name, cfg.filters) for name in FILTERS],
        ScriptStep(cfg.script),
        Tally("filtered"),
    ]
    if dd.exact:
        first.append(ExactSignaturePassthrough(exact_sigs, config=ex_cfg))
    if not (dd.exact or dd.near):
        first.append(_final_writer(plan))
        return [Stage("filter", first, plan.tasks)]
    first.append(
        JsonlWriter(filtered, output_filename="${rank}.jsonl", compression=None, adapter=intermediate_adapter)
    )
    stages = [Stage("filter", first, plan.tasks)]

    def reread() -> list[PipelineStep]:
        steps: list[PipelineStep] = [RankFileReader(filtered, compression=None, add_file_path=False)]
        if dd.exact:
            steps += [
                Tally("before_exact_dedup"),
                ExactDedupFilter(exact_dups, config=ex_cfg),
                Tally("after_exact_dedup"),
            ]
        return steps

    if dd.exact:
        stages.append(Stage("exact_find", [ExactFindDedups(exact_sigs, exact_dups, config=ex_cfg)], 1))
    if dd.near:
        stages.append(
            Stage("minhash_sig", [*reread(), CharMinhashSignature(mh_sigs, config=mh_cfg)], plan.tasks)
        )
        stages.append(
            Stage(
                "minhash_buckets", [MinhashDedupBuckets(mh_sigs, mh_buckets, config=mh_cfg)], dd.num_buckets
            )
        )
        stages.append(
            Stage("minhash_cluster", [MinhashDedupCluster(mh_buckets, mh_clusters, config=mh_cfg)], 1)
        )
    last = reread()
    if dd.near:
        last += [Tally("before_near_dedup"), MinhashDedupFilter(mh_clusters), Tally("after_near_dedup")]
    last.append(_final_writer(plan))
    stages.append(Stage("write", last, plan.tasks))
    return stages


def _final_writer(plan: RunPlan) -> PipelineStep:
    """Output shards: `shards/<rank>.jsonl.gz` (or .parquet), split at `max_file_size_mb`."""
    out = plan.cfg.output
    shards = str(plan.output / "shards")
    max_size = int(out.max_file_size_mb * 2**20)
    compression = None if out.compression == "none" else out.compression
    if out.format == "parquet":
        return ParquetWriter(
            shards,
            output_filename="${rank}.parquet",
            compression=compression,
            adapter=output_adapter,
            max_file_size=max_size,
        )
    return JsonlWriter(
        shards,
        output_filename="${rank}.jsonl",
        compression=compression,
        adapter=output_adapter,
        max_file_size=max_size,
    )


# ---------------------------------------------------------------------------------------------
# running


def check_output_dir(plan: RunPlan, overwrite: bool = False) -> None:
    """Refuse to mix two different runs in one output directory; record this run's plan."""
    run_json = plan.output / "run.json"
    fp = plan.fingerprint()
    if run_json.exists():
        previous = json.loads(run_json.read_text(encoding="utf-8"))
        if previous.get("fingerprint") != fp:
            if not overwrite:
                raise RunError(
                    f"{plan.output} holds a run with other inputs or settings (see {run_json}). "
                    "Use a new --output, or --overwrite to discard it."
                )
            shutil.rmtree(plan.output)
    elif plan.output.exists() and any(plan.output.iterdir()):
        if not overwrite:
            raise RunError(
                f"{plan.output} exists and is not a zhtw-corpus output. Use a new --output or --overwrite."
            )
        shutil.rmtree(plan.output)
    plan.output.mkdir(parents=True, exist_ok=True)
    run_json.write_text(
        json.dumps({"inputs": plan.inputs, "fingerprint": fp, "zhtw_stats_version": STATS_VERSION}, indent=2),
        encoding="utf-8",
    )


def make_executors(plan: RunPlan, stages: list[Stage], kind: str = "local") -> list:
    """One datatrove executor per stage, run here: local processes (`local`) or a Ray cluster (`ray`)."""
    extra: dict[str, Any] = {}
    if kind == "ray":
        try:
            from datatrove.executor.ray import RayPipelineExecutor as executor_class
        except ImportError as e:  # pragma: no cover - depends on the install
            raise RunError("--executor ray needs Ray: pip install 'zhtw[ray]'") from e
    else:
        from datatrove.executor.local import LocalPipelineExecutor as executor_class

        extra["start_method"] = "fork" if sys.platform == "linux" else "spawn"
    return [
        executor_class(
            pipeline=s.pipeline,
            tasks=s.tasks,
            workers=min(plan.workers, s.tasks),
            logging_dir=str(plan.work / "logs" / s.name),
            **extra,
        )
        for s in stages
    ]


@dataclass
class SlurmOptions:
    partition: str
    time: str = "24:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    venv_path: str | None = None  # a virtualenv directory; its bin/activate is sourced in each job
    sbatch_args: dict[str, str] | None = None


def make_slurm_executors(plan: RunPlan, stages: list[Stage], opts: SlurmOptions) -> list:
    """One Slurm array job per stage, each depending on the previous one."""
    from datatrove.executor.slurm import SlurmPipelineExecutor

    executors: list = []
    for s in stages:
        executors.append(
            SlurmPipelineExecutor(
                pipeline=s.pipeline,
                tasks=s.tasks,
                time=opts.time,
                partition=opts.partition,
                cpus_per_task=opts.cpus_per_task,
                mem_per_cpu_gb=opts.mem_per_cpu_gb,
                job_name=f"zhtw-{s.name}",
                venv_path=str(Path(opts.venv_path) / "bin" / "activate") if opts.venv_path else None,
                sbatch_args=opts.sbatch_args,
                logging_dir=str(plan.work / "logs" / s.name),
                slurm_logs_folder=str(plan.work / "slurm_logs" / s.name),
                depends=executors[-1] if executors else None,
            )
        )
    return executors


def run_local(
    plan: RunPlan,
    executor: str = "local",
    progress: bool = True,
    echo: Callable[[str], None] = print,
    keep_work: bool = False,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run every stage to completion here (local processes or a Ray cluster) and write stats.json.

    Unless `verbose`, datatrove's console logging goes to `_work/logs/console.log` and a progress
    bar per stage (tasks done) is shown instead; unreadable inputs are echoed one line each.
    """
    stages = build_stages(plan, progress=progress and verbose)
    executors = make_executors(plan, stages, executor)
    started = time.time()
    console_log = plan.work / "logs" / "console.log"
    console_log.parent.mkdir(parents=True, exist_ok=True)
    for i, (stage, ex) in enumerate(zip(stages, executors), 1):
        done = len(stage_completions(plan, stage.name))
        if done >= stage.tasks:
            echo(f"[{i}/{len(stages)}] {stage.name}: done, skipped")
            continue
        echo(f"[{i}/{len(stages)}] {stage.name}: {stage.tasks - done} of {stage.tasks} tasks to run")
        if verbose:
            ex.run()
        else:
            with _quiet_stderr(console_log) as term:
                _run_with_progress(ex, plan, stage, term if progress else None)
        if stage.name == "filter":
            _echo_issues(plan.work / "issues", echo)
    stats = collect_stats(plan.output, stages_order=[s.name for s in stages])
    stats["wall_time_s_last_invocation"] = round(time.time() - started, 3)
    write_stats(plan.output, stats)
    if not keep_work and stats["finished"]:
        clean_intermediates(plan)
    return stats


@contextlib.contextmanager
def _quiet_stderr(log_path: Path) -> Iterator[TextIO]:
    """Send file descriptor 2 (datatrove's loguru sink, child processes) to `log_path`; yield the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    term = os.fdopen(os.dup(saved), "w")
    with open(log_path, "ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield term
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        term.close()


def _run_with_progress(ex: Any, plan: RunPlan, stage: Stage, term: TextIO | None) -> None:
    """Run one stage's executor while a bar counts its completed tasks."""
    if term is None:
        ex.run()
        return
    stop = threading.Event()
    bar = tqdm(total=stage.tasks, desc=f"  {stage.name}", unit="task", file=term, leave=True)

    def poll() -> None:
        while not stop.wait(0.5):
            bar.n = len(stage_completions(plan, stage.name))
            bar.refresh()

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        ex.run()
    finally:
        stop.set()
        t.join()
        bar.n = len(stage_completions(plan, stage.name))
        bar.close()


def _echo_issues(issues_dir: Path, echo: Callable[[str], None], limit: int = 50) -> None:
    n = 0
    for n, issue in enumerate(iter_issue_files(issues_dir), 1):
        if n <= limit:
            echo(f"warning: {issue['source']} ({issue['where']}): {issue['reason']}: {issue['detail']}")
    if n > limit:
        echo(f"warning: ... {n - limit} more unreadable input units, listed in stats.json")


def stage_completions(plan: RunPlan, stage: str) -> list[Path]:
    d = plan.work / "logs" / stage / "completions"
    return list(d.iterdir()) if d.is_dir() else []


def clean_intermediates(plan: RunPlan) -> None:
    """Delete the bulky intermediates of a finished run; logs and completion markers stay."""
    for name in ("filtered", "exact_sigs", "exact_dups", "mh_sigs", "mh_buckets", "mh_clusters"):
        shutil.rmtree(plan.work / name, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# statistics


def load_stage_stats(logs: Path) -> PipelineStats | None:
    """Sum the per-task stats datatrove saved for one stage (all ranks, across reruns)."""
    total: PipelineStats | None = None
    for f in sorted((logs / "stats").glob("*.json")):
        ps = PipelineStats.from_json(json.loads(f.read_text(encoding="utf-8")))
        total = ps if total is None else total + ps
    return total


def _counters(stats: Any) -> dict[str, float]:
    """A step's counters as plain totals (datatrove keeps loaded ones as ints or dicts)."""
    out: dict[str, float] = {}
    for k, v in stats.stats.items():
        if hasattr(v, "total"):
            out[k] = v.total
        elif isinstance(v, dict):
            out[k] = v.get("total", 0)
        else:
            out[k] = v
    return out


def collect_stats(output: str | Path, stages_order: list[str] | None = None) -> dict[str, Any]:
    """Build stats.json from the stages' saved stats: per-step counts and times, and the balance."""
    output = Path(output)
    work = output / "_work"
    logs = work / "logs"
    present = {p.name for p in logs.iterdir() if p.is_dir()} if logs.is_dir() else set()
    stage_names = stages_order or [s for s in STAGE_ORDER if s in present]
    per_stage = {name: load_stage_stats(logs / name) for name in stage_names}
    if per_stage.get("filter") is None:
        raise RunError(f"{output} has no finished filter stage: run `zhtw-corpus run` to (re)start it")

    steps: list[dict[str, Any]] = []
    unreadable: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    dropped_chars: Counter[str] = Counter()
    read = chars_read = 0
    scripts: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    tallies: dict[str, dict[str, float]] = {}

    for stage_name in stage_names:
        ps = per_stage[stage_name]
        if ps is None:
            continue
        for st in ps.stats:
            c = _counters(st)
            if st.name.startswith("🀄 - ZHTW: tally "):
                if stage_name in ("filter", "write"):
                    tallies[st.name.split("tally ", 1)[1]] = c
                continue
            step = {
                "stage": stage_name,
                "step": st.name.split(": ", 1)[-1],
                "time_s": round(st.time_stats.total, 3),
            }
            if "read" in c:  # the reader
                read, chars_read = int(c.get("read", 0)), int(c.get("chars_read", 0))
                for k, v in c.items():
                    if k.startswith("unreadable/"):
                        unreadable[k.split("/", 1)[1]] += int(v)
                step.update(
                    documents_read=read,
                    characters_read=chars_read,
                    unreadable=dict(
                        sorted(
                            (k.split("/", 1)[1], int(v)) for k, v in c.items() if k.startswith("unreadable/")
                        )
                    ),
                    input_files=int(c.get("input_files", 0)),
                )
            elif "docs_in" in c:
                drops = {
                    k.split("/", 1)[1]: {
                        "documents": int(v),
                        "characters": int(c.get("chars_dropped/" + k.split("/", 1)[1], 0)),
                    }
                    for k, v in c.items()
                    if k.startswith("dropped/")
                }
                for reason, d in drops.items():
                    dropped[reason] += d["documents"]
                    dropped_chars[reason] += d["characters"]
                step.update(
                    documents_in=int(c["docs_in"]),
                    characters_in=int(c.get("chars_in", 0)),
                    kept=int(c.get("kept", 0)),
                    characters_kept=int(c.get("chars_kept", 0)),
                    dropped=drops,
                )
                for k, v in c.items():
                    if k.startswith("script/"):
                        scripts[k.split("/", 1)[1]] += int(v)
                    elif k.startswith("converted/"):
                        converted[k.split("/", 1)[1]] += int(v)
                    elif k == "boilerplate_lines_removed":
                        step["boilerplate_lines_removed"] = int(v)
            elif (
                stage_name in ("filter", "write")
                or "DEDUP" not in st.name
                or "exact-deduplication stage 3" in st.name
            ):
                continue  # re-reads, writers and the dedup filters (accounted below with tallies)
            else:
                step["counters"] = {k: v for k, v in c.items()}
            steps.append(step)

    # stock datatrove dedup filters: account with the tallies around them (write stage)
    for reason, before, after, step_name, datatrove_name in (
        (
            "exact_duplicate",
            "before_exact_dedup",
            "after_exact_dedup",
            "exact dedup",
            "exact-deduplication stage 3",
        ),
        (
            "near_duplicate",
            "before_near_dedup",
            "after_near_dedup",
            "near dedup (MinHash)",
            "MinHash stage 4",
        ),
    ):
        if before in tallies and after in tallies:
            b, a = tallies[before], tallies[after]
            n = int(b.get("docs", 0) - a.get("docs", 0))
            ch = int(b.get("chars", 0) - a.get("chars", 0))
            dropped[reason] += n
            dropped_chars[reason] += ch
            steps.append(
                {
                    "stage": "write",
                    "step": step_name,
                    "documents_in": int(b.get("docs", 0)),
                    "characters_in": int(b.get("chars", 0)),
                    "kept": int(a.get("docs", 0)),
                    "characters_kept": int(a.get("chars", 0)),
                    "dropped": {reason: {"documents": n, "characters": ch}},
                    "time_s": _stage_step_time(per_stage.get("write"), datatrove_name),
                }
            )

    out_tally = tallies.get("after_near_dedup") or tallies.get("after_exact_dedup")
    if out_tally is None and "write" not in per_stage:
        out_tally = tallies.get("filtered")
    written = int(out_tally.get("docs", 0)) if out_tally else 0
    written_chars = int(out_tally.get("chars", 0)) if out_tally else 0
    finished = _is_finished(output, stage_names)
    balance = written + sum(dropped.values()) + sum(unreadable.values())
    issues = list(_limited(iter_issue_files(work / "issues"), MAX_ISSUES_IN_STATS))
    bad_files: dict[str, dict[str, int]] = defaultdict(Counter)
    for issue in issues:
        bad_files[issue["source"]][issue["reason"]] += 1
    shards = (
        sorted(p for p in (output / "shards").rglob("*") if p.is_file())
        if (output / "shards").is_dir()
        else []
    )
    return {
        "zhtw_stats_version": STATS_VERSION,
        "finished": finished,
        "documents": {
            "read": read,
            "written": written,
            "dropped": dict(sorted(dropped.items())),
            "unreadable": dict(sorted(unreadable.items())),
            "balanced": finished and balance == read,
        },
        "characters": {
            "read": chars_read,
            "written": written_chars,
            "dropped": dict(sorted(dropped_chars.items())),
        },
        "scripts": dict(sorted(scripts.items())),
        "converted": dict(sorted(converted.items())),
        "steps": steps,
        "bad_inputs": {"files": {k: dict(v) for k, v in sorted(bad_files.items())}, "examples": issues[:100]},
        "shards": [{"path": str(p.relative_to(output)), "bytes": p.stat().st_size} for p in shards],
    }


def _stage_step_time(ps: PipelineStats | None, kind: str) -> float:
    if ps is None:
        return 0.0
    return round(sum(st.time_stats.total for st in ps.stats if kind in st.name), 3)


def _limited(it: Any, n: int) -> Any:
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def _is_finished(output: Path, stage_names: list[str]) -> bool:
    run = (
        json.loads((output / "run.json").read_text(encoding="utf-8"))
        if (output / "run.json").exists()
        else {}
    )
    tasks = run.get("fingerprint", {}).get("tasks")
    for name in stage_names:
        comp = output / "_work" / "logs" / name / "completions"
        n = len(list(comp.iterdir())) if comp.is_dir() else 0
        exe = output / "_work" / "logs" / name / "executor.json"
        want = json.loads(exe.read_text()).get("world_size", tasks) if exe.exists() else tasks
        if want is None or n < want:
            return False
    return True


def write_stats(output: Path, stats: dict[str, Any]) -> None:
    tmp = output / "stats.json.tmp"
    tmp.write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(output / "stats.json")


def format_summary(stats: dict[str, Any]) -> str:
    """The table printed at the end of a run and by `zhtw-corpus stats`."""
    d = stats["documents"]
    lines = [
        f"{'step':<32}{'docs in':>10}{'kept':>10}{'dropped':>10}{'chars in':>14}{'time s':>9}  drop reasons",
        "-" * 110,
    ]
    for s in stats["steps"]:
        if "documents_read" in s:
            unread = sum(s["unreadable"].values())
            lines.append(
                f"{s['step'][:31]:<32}{s['documents_read']:>10}{s['documents_read'] - unread:>10}{unread:>10}"
                f"{s['characters_read']:>14}{s['time_s']:>9.2f}  "
                + ", ".join(f"{k}={v}" for k, v in s["unreadable"].items())
            )
        elif "documents_in" in s:
            dropped = sum(v["documents"] for v in s["dropped"].values())
            lines.append(
                f"{s['step'][:31]:<32}{s['documents_in']:>10}{s['kept']:>10}{dropped:>10}"
                f"{s['characters_in']:>14}{s['time_s']:>9.2f}  "
                + ", ".join(f"{k}={v['documents']}" for k, v in s["dropped"].items())
            )
        else:
            lines.append(f"{(s['stage'] + ': ' + s['step'])[:31]:<32}{'':>44}{s['time_s']:>9.2f}")
    lines.append("-" * 110)
    lines.append(
        f"read {d['read']} = written {d['written']} + dropped {sum(d['dropped'].values())}"
        f" + unreadable {sum(d['unreadable'].values())}: {'balanced' if d['balanced'] else 'NOT balanced'}"
        + ("" if stats.get("finished", True) else " (run not finished)")
    )
    if stats.get("scripts"):
        lines.append("scripts: " + ", ".join(f"{k}={v}" for k, v in stats["scripts"].items()))
    if stats.get("converted"):
        lines.append("converted: " + ", ".join(f"{k}={v}" for k, v in stats["converted"].items()))
    total_bytes = sum(s["bytes"] for s in stats.get("shards", []))
    lines.append(f"shards: {len(stats.get('shards', []))} files, {total_bytes / 2**20:.2f} MiB")
    bad = stats.get("bad_inputs", {}).get("files", {})
    for f, reasons in list(bad.items())[:20]:
        lines.append(f"bad input: {f}: " + ", ".join(f"{k}={v}" for k, v in reasons.items()))
    return "\n".join(lines)
