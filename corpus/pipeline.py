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
run, for reruns; the shards' names and sizes once finished), ``_work/`` (intermediates and
datatrove's logs/completions), ``.zhtw-output`` (the ownership marker: only a directory carrying it
is ever cleared by --overwrite) and ``.zhtw.lock`` (held while a run writes; one writer at a time).

``stats.json``: ``documents`` (read = written + dropped by reason + unreadable by reason, and
whether that balances; ``accounting`` says in words what is counted), ``characters``, ``inputs``
(the files read, and every entry found but skipped unopened, with path, reason and detail),
``scripts``/``converted``/``origins``, ``mainland_usage``, ``steps`` (per step: in, kept, dropped
by reason, time), ``bad_inputs`` (every input file with unreadable units, counts by reason, and up
to 20 examples per file) and ``shards``.

Unreadable reasons (``documents.unreadable``; each is one unit of ``documents.read``; the readers'
module doc, :mod:`zhtw.corpus.readers`, says exactly what each covers):

- entries skipped unopened by the input scan: ``not_regular_file`` (a FIFO, socket or device:
  opening it could block the run for ever), ``broken_link``, ``symlink_loop`` (a directory link
  back into a directory already searched), ``unreadable_dir`` (a directory that cannot be listed);
- whole files: ``unreadable_file``, ``empty_file``, ``unsupported_compression`` (bzip2, xz, zip,
  7z, lz4 whatever the name says), ``utf16_text``, ``missing_text_column`` (Parquet);
- compressed data: ``truncated_gzip``, ``corrupt_gzip``, ``truncated_zstd``, ``corrupt_zstd``
  (the documents before the damage are kept);
- units: ``too_large`` (a unit over ``input.max_unit_bytes`` bytes once decompressed, skipped
  without being held), ``too_long`` (a document over ``input.max_doc_chars`` characters),
  ``invalid_utf8``, ``invalid_json``, ``not_an_object``, ``missing_text``, ``text_not_string``,
  ``corrupt_parquet``;
- WARC/WET records: ``corrupt_warc_record``, ``bad_content_length`` (reading resumes at the next
  record), ``truncated_record``, ``non_html_payload``, ``non_2xx_status``, ``html_too_deep``
  (nesting over the reader's depth limit: extraction would stall a worker),
  ``html_extraction_failed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import ExactDedupFilter, ExactFindDedups
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.pipeline.writers.parquet import ParquetWriter
from datatrove.utils.stats import PipelineStats
from tqdm import tqdm
from xxhash import xxh3_128

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import (
    LOCK_NAME,
    OWNER_MARKER,
    atomic_write_json,
    check_disjoint,
    claim_output,
    clear_owned_output,
    output_lock,
    show_path,
)
from zhtw.corpus.config import CorpusConfig, config_to_dict
from zhtw.corpus.readers import ReadIssue, scan_inputs
from zhtw.corpus.steps import (
    CharMinhashSignature,
    CleanStep,
    CountingStep,
    DropAdapter,
    ExactSignaturePassthrough,
    FilterStep,
    InjectionStep,
    MainlandUsageStep,
    RankFileReader,
    ScriptStep,
    Tally,
    ZhtwReader,
    exact_dedup_config,
    intermediate_adapter,
    load_issues,
    minhash_config,
    output_adapter,
)
from zhtw.corpus.text import FILTERS

STATS_VERSION = 1
STAGE_ORDER = ["filter", "exact_find", "minhash_sig", "minhash_buckets", "minhash_cluster", "write"]
COMMAND = "zhtw-corpus run"
SAMPLE_BYTES = 1 << 20  # an input's fingerprint hashes its first and last MiB
# What a zhtw-corpus run writes at the top of its output directory (and nothing else).
OUTPUT_ENTRIES = {"run.json", "stats.json", "shards", "dropped", "_work", OWNER_MARKER, LOCK_NAME}
_SHARD_NAME_RE = re.compile(r"^(?:\d{3,}_)?\d{5}\.(?:jsonl(?:\.gz|\.zst)?|parquet)$")


ACCOUNTING = (
    "read = written + dropped + unreadable. read counts every document-shaped unit of the inputs (WET "
    "conversion / WARC response record, JSONL line, Parquet row, .txt file) and one unit per file-level "
    "problem; each input entry skipped unopened (inputs.skipped: a FIFO or socket, a broken link, a "
    "link loop, a directory that cannot be listed) is one such unit, counted under unreadable by its "
    "reason and named in bad_inputs.files."
)


class RunError(ZhtwError):
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
    skipped: list[ReadIssue] = field(default_factory=list)
    _fingerprint: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def work(self) -> Path:
        return self.output / "_work"

    def fingerprint(self) -> dict[str, Any]:
        """Inputs (by size, modification time and content sample), settings and task count."""
        if self._fingerprint is None:
            self._fingerprint = {
                "files": [input_fingerprint(f) for f in self.files],
                "skipped": skipped_entries(self.skipped),
                "config": config_to_dict(self.cfg),
                "tasks": self.tasks,
            }
        return self._fingerprint


@dataclass
class Stage:
    name: str
    pipeline: list[PipelineStep]
    tasks: int


def input_fingerprint(path: str) -> dict[str, Any]:
    """Size, mtime_ns and a hash of the first and last MiB of one input: an input edited in
    place (even to the same size) makes a rerun refuse, without re-reading terabytes of crawl.

    Only regular files are opened (a FIFO would block); an unreadable file is recorded as such
    (the reader reports it as an unreadable unit)."""
    entry: dict[str, Any] = {"path": show_path(path)}
    try:
        st = os.stat(path)
    except OSError as e:
        return {**entry, "error": e.strerror}
    entry.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    if not stat.S_ISREG(st.st_mode):
        return {**entry, "kind": "not a regular file"}
    h = xxh3_128()
    try:
        with open(path, "rb") as f:
            h.update(f.read(SAMPLE_BYTES))
            if st.st_size > SAMPLE_BYTES:
                f.seek(max(SAMPLE_BYTES, st.st_size - SAMPLE_BYTES))
                h.update(f.read(SAMPLE_BYTES))
    except OSError as e:
        return {**entry, "error": e.strerror}
    return {**entry, "sample_xxh3": h.hexdigest()}


def plan_run(
    inputs: list[str],
    output: str | Path,
    cfg: CorpusConfig,
    workers: int | None = None,
    tasks: int | None = None,
) -> RunPlan:
    """Resolve inputs and task counts. Tasks default to one per input file, at most 4 per worker.

    Entries found but not readable as files (a FIFO, a broken link, a link loop, a directory that
    cannot be listed) are kept in `skipped`: the reader counts each as an unreadable unit."""
    scan = scan_inputs(inputs)
    workers = workers or os.cpu_count() or 1
    if tasks is None:
        tasks = max(1, min(len(scan.files), 4 * workers))
    return RunPlan(
        inputs=list(inputs),
        files=scan.files,
        output=Path(output).resolve(),
        cfg=cfg,
        tasks=tasks,
        workers=workers,
        skipped=scan.skipped,
    )


def skipped_entries(skipped: list[ReadIssue]) -> list[dict[str, str]]:
    """The skipped input entries as JSON records (path, reason, detail), as run.json and stats.json
    keep them."""
    return [{"path": i.source, "reason": i.reason, "detail": i.detail} for i in skipped]


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
        ZhtwReader(
            plan.files, cfg.input, issues_dir=str(work / "issues"), progress=progress, skipped=plan.skipped
        ),
        *_with_drop_writers(plan, _document_steps(cfg)),
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
                ExactDedupFilter(
                    exact_dups,
                    config=ex_cfg,
                    exclusion_writer=_drop_writer(plan, "exact_dedup", "exact_duplicate"),
                ),
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
        near = MinhashDedupFilter(
            mh_clusters, exclusion_writer=_drop_writer(plan, "near_dedup", "near_duplicate")
        )
        last += [Tally("before_near_dedup"), near, Tally("after_near_dedup")]
    last.append(_final_writer(plan))
    stages.append(Stage("write", last, plan.tasks))
    return stages


def _document_steps(cfg: CorpusConfig) -> list[CountingStep]:
    """Clean, quality filters (spam_injection right after spam), script + conversion, mainland usage."""
    steps: list[CountingStep] = [CleanStep(cfg.clean)]
    for name in FILTERS:
        steps.append(FilterStep(name, cfg.filters))
        if name == "spam":
            steps.append(InjectionStep(cfg.filters))
    steps.append(ScriptStep(cfg.script, keep_scripts=cfg.filters.keep_scripts))
    steps.append(MainlandUsageStep(cfg.filters))
    return steps


def _with_drop_writers(plan: RunPlan, steps: list[CountingStep]) -> list[CountingStep]:
    """Give every step an exclusion writer when the run keeps dropped documents."""
    for step in steps:
        step.exclusion_writer = _drop_writer(plan, step.key)
    return steps


def _drop_writer(plan: RunPlan, step: str, reason: str | None = None) -> JsonlWriter | None:
    """`dropped/<step>/<rank>.jsonl.gz`: the documents a step dropped, with drop_reason and drop_step
    (only with output.keep_dropped)."""
    if not plan.cfg.output.keep_dropped:
        return None
    return JsonlWriter(
        str(plan.output / "dropped" / step),
        output_filename="${rank}.jsonl",
        compression="gzip",
        adapter=DropAdapter(reason, step),
    )


def _final_writer(plan: RunPlan) -> PipelineStep:
    """Output shards: `shards/<rank>.jsonl.gz` (or .parquet), split at `max_file_size_mb`; with
    `output.split_by_origin`, `shards/<origin>/<rank>...` (native, converted, ...)."""
    out = plan.cfg.output
    shards = str(plan.output / "shards")
    max_size = int(out.max_file_size_mb * 2**20)
    compression = None if out.compression == "none" else out.compression
    prefix = "${origin}/" if out.split_by_origin else ""
    if out.format == "parquet":
        return ParquetWriter(
            shards,
            output_filename=prefix + "${rank}.parquet",
            compression=compression,
            adapter=output_adapter,
            max_file_size=max_size,
        )
    return JsonlWriter(
        shards,
        output_filename=prefix + "${rank}.jsonl",
        compression=compression,
        adapter=output_adapter,
        max_file_size=max_size,
    )


# ---------------------------------------------------------------------------------------------
# running


@contextlib.contextmanager
def open_output(plan: RunPlan, overwrite: bool = False) -> Iterator[None]:
    """Check the output directory and hold its lock for the whole run (one writer at a time).

    The ownership checks come before the lock, because taking the lock marks a directory as ours.
    """
    _check_output_safe(plan)
    with output_lock(plan.output, command=COMMAND):
        check_output_dir(plan, overwrite=overwrite)
        yield


def check_output_dir(plan: RunPlan, overwrite: bool = False) -> None:
    """Refuse to mix two different runs in one output directory, or to touch what is not ours;
    record this run's plan in run.json.

    A directory is cleared (with --overwrite) only when it carries zhtw's ownership marker; a
    finished run whose shards were deleted or changed since is refused (or redone with
    --overwrite) instead of being reported "done".
    """
    _check_output_safe(plan)
    claim_output(plan.output)
    run_json = plan.output / "run.json"
    fp = plan.fingerprint()
    if run_json.exists():
        problem = _rerun_problem(plan, _read_run_json(run_json), fp)
    elif _has_content(plan.output):
        problem = f"{show_path(plan.output)} is not empty and holds no zhtw-corpus run (no run.json)"
    else:
        problem = None
    if problem:
        if not overwrite:
            raise RunError(f"{problem}. Use a new --output, or --overwrite to discard it and run again.")
        clear_owned_output(plan.output, command=COMMAND)
    if problem or not run_json.exists():
        atomic_write_json(
            run_json, {"inputs": plan.inputs, "fingerprint": fp, "zhtw_stats_version": STATS_VERSION}
        )


def _check_output_safe(plan: RunPlan) -> None:
    """Refuse an output that overlaps an input, is not a directory, or holds what zhtw did not write.

    An output written by an older zhtw (run.json but no ownership marker) is adopted only when it
    holds nothing but what a zhtw-corpus run writes (:data:`OUTPUT_ENTRIES`, shard files).
    """
    check_disjoint(plan.output, [*(i for i in plan.inputs if os.path.exists(i)), *plan.files])
    out = plan.output
    if out.exists() and not out.is_dir():
        raise RunError(
            f"--output {show_path(out)} exists and is not a directory; choose another output path."
        )
    if not out.is_dir() or (out / OWNER_MARKER).is_file() or not _has_content(out):
        return
    if _looks_like_old_output(out):
        claim_output(out)
        return
    raise RunError(
        f"--output {show_path(out)} holds files that zhtw-corpus did not write; it will not write into it "
        "or delete it (not even with --overwrite). Choose a new or empty --output directory."
    )


def _has_content(directory: Path) -> bool:
    return any(e.name not in (OWNER_MARKER, LOCK_NAME) for e in directory.iterdir())


def _looks_like_old_output(directory: Path) -> bool:
    """An output of a zhtw-corpus that predates the ownership marker: run.json and only our entries."""
    if not (directory / "run.json").is_file() or not {e.name for e in directory.iterdir()} <= OUTPUT_ENTRIES:
        return False
    shards = directory / "shards"
    if shards.is_dir() and not all(e.is_file() and _SHARD_NAME_RE.match(e.name) for e in shards.iterdir()):
        return False
    return "fingerprint" in (_read_run_json(directory / "run.json") or {})


def _read_run_json(path: Path) -> dict[str, Any] | None:
    """The run record, or None when it is unreadable or not a JSON object (e.g. cut short)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _rerun_problem(plan: RunPlan, previous: dict[str, Any] | None, fp: dict[str, Any]) -> str | None:
    """Why the run recorded in `previous` cannot be resumed or reported as done, or None."""
    where = show_path(plan.output)
    old = previous.get("fingerprint") if previous is not None else None
    if not isinstance(old, dict):
        return f"{where}/run.json is unreadable or records no zhtw-corpus run"
    if old.get("files") != fp["files"]:
        return f"{where} holds a run with other inputs ({_input_difference(old.get('files'), fp['files'])})"
    if _entries(old.get("skipped", fp["skipped"])) != _entries(fp["skipped"]):
        return f"{where} holds a run with other inputs (the input entries skipped unopened changed)"
    if old.get("tasks") != fp["tasks"]:
        return (
            f"{where} holds a run with other settings (--tasks {old.get('tasks')}, now {fp['tasks']}; "
            f"the default depends on --workers: give --tasks {old.get('tasks')} to resume it)"
        )
    if old.get("config") != fp["config"]:
        return f"{where} holds a run with other settings (the config differs from {where}/run.json)"
    return _shard_problem(plan.output, previous.get("shards"))  # type: ignore[union-attr]


def _entries(skipped: Any) -> list[tuple[str, str]]:
    """(path, reason) of recorded skipped entries (their details may be worded differently)."""
    return [(e.get("path"), e.get("reason")) for e in skipped] if isinstance(skipped, list) else []


def _input_difference(old: Any, new: list[dict[str, Any]]) -> str:
    """The first input that differs from the recorded run, in words."""
    old_by_path = {f.get("path"): f for f in old} if isinstance(old, list) else {}
    new_by_path = {f["path"]: f for f in new}
    for path, entry in new_by_path.items():
        before = old_by_path.get(path)
        if before is None:
            return f"{path} is new"
        if before != entry:
            changed = [k for k in ("size", "mtime_ns", "sample_xxh3") if before.get(k) != entry.get(k)]
            return f"{path} changed since that run ({', '.join(changed) or 'recorded differently'})"
    missing = [p for p in old_by_path if p not in new_by_path]
    return f"{missing[0]} is no longer an input" if missing else "the input list changed"


def _shard_problem(output: Path, recorded: Any) -> str | None:
    """A shard recorded at the end of a finished run that is now missing or has another size."""
    if not isinstance(recorded, list):
        return None
    for shard in recorded:
        path = output / shard["path"]
        if not path.is_file():
            return f"the finished run in {show_path(output)} lost its output shard {shard['path']}"
        if path.stat().st_size != shard["bytes"]:
            return (
                f"the output shard {shard['path']} in {show_path(output)} changed since the run finished "
                f"({path.stat().st_size} bytes, recorded {shard['bytes']})"
            )
    return None


def record_finished(plan: RunPlan, stats: dict[str, Any]) -> None:
    """Add the shards (names and sizes) of a finished run to run.json, for the check on rerun."""
    run_json = plan.output / "run.json"
    record = _read_run_json(run_json) or {}
    if record.get("shards") != stats["shards"]:
        atomic_write_json(run_json, {**record, "shards": stats["shards"]})


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
    if stats["finished"]:
        record_finished(plan, stats)
        if not keep_work:
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
    """One line per input file with unreadable units (counts by reason and the first example)."""
    files, examples = load_issues(issues_dir)
    first = {}
    for ex in examples:
        first.setdefault(ex["source"], ex)
    for source, counts in list(files.items())[:limit]:
        ex = first.get(source)
        example = f" (first: {ex['where']}: {ex['detail']})" if ex else ""
        echo(f"warning: {source}: " + ", ".join(f"{k}={v}" for k, v in counts.items()) + example)
    if len(files) > limit:
        echo(
            f"warning: ... {len(files) - limit} more input files with unreadable units: bad_inputs in stats.json"
        )


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
    origins: Counter[str] = Counter()
    mainland: dict[str, Counter[str]] = {}
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
                    elif k.startswith("origin/"):
                        origins[k.split("/", 1)[1]] += int(v)
                    elif k.startswith("mainland/"):
                        _, origin, score_bin = k.split("/", 2)
                        mainland.setdefault(origin, Counter())[score_bin] += int(v)
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
    bad_files, examples = load_issues(work / "issues")
    recorded = (_read_run_json(output / "run.json") or {}).get("fingerprint") or {}
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
            "accounting": ACCOUNTING,
        },
        "inputs": {
            "files": len(recorded.get("files") or []),
            "skipped": recorded.get("skipped") or [],
        },
        "characters": {
            "read": chars_read,
            "written": written_chars,
            "dropped": dict(sorted(dropped_chars.items())),
        },
        "scripts": dict(sorted(scripts.items())),
        "converted": dict(sorted(converted.items())),
        "origins": dict(sorted(origins.items())),
        "mainland_usage": {
            "unit": "mainland-only words per 1000 Han characters (corpus/data/mainland_terms.tsv)",
            "documents_by_origin": {o: _sorted_bins(c) for o, c in sorted(mainland.items())},
        },
        "steps": steps,
        "bad_inputs": {"files": bad_files, "examples": examples},
        "shards": [{"path": str(p.relative_to(output)), "bytes": p.stat().st_size} for p in shards],
    }


def dropped_examples(output: str | Path, per_reason: int) -> dict[str, list[dict[str, Any]]]:
    """Up to ``per_reason`` dropped documents per drop reason from `dropped/` (a run with
    --keep-dropped), read in file order."""
    import gzip

    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((Path(output) / "dropped").rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                bucket = found.setdefault(str(record.get("drop_reason")), [])
                if len(bucket) < per_reason:
                    bucket.append(record)
    return dict(sorted(found.items()))


def _sorted_bins(counts: Counter[str]) -> dict[str, int]:
    """Histogram bins in score order ("0", "0-0.5", ..., ">=10")."""

    def lower_edge(label: str) -> float:
        return float(label.lstrip(">=").split("-")[0])

    return {k: counts[k] for k in sorted(counts, key=lower_edge)}


def _stage_step_time(ps: PipelineStats | None, kind: str) -> float:
    if ps is None:
        return 0.0
    return round(sum(st.time_stats.total for st in ps.stats if kind in st.name), 3)


def _is_finished(output: Path, stage_names: list[str]) -> bool:
    run = _read_run_json(output / "run.json") or {}
    tasks = (run.get("fingerprint") or {}).get("tasks")
    for name in stage_names:
        comp = output / "_work" / "logs" / name / "completions"
        n = len(list(comp.iterdir())) if comp.is_dir() else 0
        exe = output / "_work" / "logs" / name / "executor.json"
        want = json.loads(exe.read_text()).get("world_size", tasks) if exe.exists() else tasks
        if want is None or n < want:
            return False
    return True


def write_stats(output: Path, stats: dict[str, Any]) -> None:
    atomic_write_json(output / "stats.json", stats)


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
    if stats.get("origins"):
        lines.append("origins: " + ", ".join(f"{k}={v}" for k, v in stats["origins"].items()))
    for origin, bins in stats.get("mainland_usage", {}).get("documents_by_origin", {}).items():
        lines.append(
            f"mainland words per 1000 Han, {origin}: " + ", ".join(f"{k}: {v}" for k, v in bins.items())
        )
    total_bytes = sum(s["bytes"] for s in stats.get("shards", []))
    lines.append(f"shards: {len(stats.get('shards', []))} files, {total_bytes / 2**20:.2f} MiB")
    skipped = stats.get("inputs", {}).get("skipped", [])
    for entry in skipped[:20]:
        lines.append(f"skipped input: {entry['path']}: {entry['reason']} ({entry['detail']})")
    if len(skipped) > 20:
        lines.append(f"skipped input: ... {len(skipped) - 20} more, each in inputs.skipped of stats.json")
    shown = {entry["path"] for entry in skipped}
    bad = {f: r for f, r in stats.get("bad_inputs", {}).get("files", {}).items() if f not in shown}
    for f, reasons in list(bad.items())[:20]:
        lines.append(f"bad input: {f}: " + ", ".join(f"{k}={v}" for k, v in reasons.items()))
    if len(bad) > 20:
        lines.append(f"bad input: ... {len(bad) - 20} more files, each with its counts in stats.json")
    return "\n".join(lines)
