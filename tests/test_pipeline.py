"""End-to-end tests of `zhtw-corpus`: accounting, resume, executors, real data, bad input."""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from zhtw.corpus.cli import main
from zhtw.corpus.config import load_config
from zhtw.corpus.pipeline import (
    RunError,
    build_stages,
    check_output_dir,
    make_executors,
    plan_run,
    run_local,
)
from zhtw.corpus.script import detect_script, script_tables

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "corpus" / "sample" / "sample.warc.wet.gz"


def run_cli(*args: str) -> int:
    return main(list(args))


def read_shards(out: Path) -> list[dict]:
    """All output records, in shard order (decompressed, so gzip timestamps do not matter)."""
    records = []
    for p in sorted((out / "shards").rglob("*.jsonl*")):
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as f:
            records.extend(json.loads(line) for line in f)
    return records


def shard_bytes(out: Path) -> dict[str, bytes]:
    result = {}
    for p in sorted((out / "shards").rglob("*.jsonl*")):
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as f:
            result[str(p.relative_to(out))] = f.read()
    return result


def assert_balanced(stats: dict) -> None:
    d = stats["documents"]
    assert stats["finished"]
    assert d["read"] == d["written"] + sum(d["dropped"].values()) + sum(d["unreadable"].values())
    assert d["balanced"] is True


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "out"
    assert run_cli("run", str(SAMPLE), "--output", str(out), "--workers", "2", "--no-progress") == 0
    return out


def test_sample_end_to_end(sample_run: Path) -> None:
    stats = json.loads((sample_run / "stats.json").read_text(encoding="utf-8"))
    assert_balanced(stats)
    d = stats["documents"]
    assert d["read"] >= 200
    assert 0 < d["written"] < d["read"]
    # the sample holds spam, English, near and exact duplicates: each is dropped with its reason
    for reason in ("spam", "exact_duplicate", "near_duplicate"):
        assert d["dropped"].get(reason, 0) > 0, (reason, d["dropped"])
    assert any(r in d["dropped"] for r in ("too_few_han", "low_han_ratio")), d["dropped"]
    records = read_shards(sample_run)
    assert len(records) == d["written"]
    assert {tuple(sorted(r)) for r in records} == {
        ("converted", "id", "mainland_score", "origin", "script", "source", "text", "url")
    }
    assert all(r["url"] and r["url"].startswith("http") for r in records)
    assert all(r["source"].endswith("sample.warc.wet.gz") for r in records)
    assert len({r["id"] for r in records}) == len(records)
    # Simplified pages were converted, Traditional ones left alone
    assert any(r["script"] == "simplified" and r["converted"] == "s2twp" for r in records)
    assert any(r["script"] == "traditional" and r["converted"] == "none" for r in records)
    simp = script_tables().simplified_only
    leftover = {c for r in records for c in r["text"] if c in simp}
    assert not leftover, sorted(leftover)[:20]
    # per-step stats carry characters and time
    steps = {s["step"]: s for s in stats["steps"]}
    assert any("spam" in name for name in steps)
    for s in stats["steps"]:
        if "documents_in" in s:
            dropped = sum(v["documents"] for v in s["dropped"].values())
            assert s["documents_in"] == s["kept"] + dropped
            if s["step"].startswith("🔻"):  # filters never change text; cleaning and conversion may
                assert s["characters_in"] == s["characters_kept"] + sum(
                    v["characters"] for v in s["dropped"].values()
                )


def test_traditional_text_is_never_s2twp_converted(sample_run: Path) -> None:
    for r in read_shards(sample_run):
        if r["script"] == "traditional":
            assert r["converted"] in ("none", "t2tw")
    texts = "".join(r["text"] for r in read_shards(sample_run))
    if "對象" in SAMPLE.read_bytes().decode("latin-1", "ignore") or "對象" in texts:
        assert "對象" in texts


def test_stats_command_and_noop_rerun(sample_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p: p.stat().st_mtime_ns for p in (sample_run / "shards").rglob("*") if p.is_file()}
    assert run_cli("run", str(SAMPLE), "--output", str(sample_run), "--workers", "2", "--no-progress") == 0
    out = capsys.readouterr().out
    assert out.count("done, skipped") >= 1 and "tasks to run" not in out
    after = {p: p.stat().st_mtime_ns for p in (sample_run / "shards").rglob("*") if p.is_file()}
    assert before == after
    assert run_cli("stats", str(sample_run)) == 0
    table = capsys.readouterr().out
    assert "balanced" in table and "NOT balanced" not in table
    assert re.search(r"read \d+ = written \d+", table)


def test_rerun_with_other_settings_is_refused(sample_run: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filters:\n  min_han_chars: 7\n", encoding="utf-8")
    plan = plan_run([str(SAMPLE)], sample_run, load_config(cfg))
    with pytest.raises(RunError, match="other settings"):
        check_output_dir(plan)


def write_bad_inputs(d: Path) -> dict[str, str]:
    """One file per bad-input kind next to good documents; returns {file name: expected reason}."""
    d.mkdir(parents=True, exist_ok=True)
    good = "臺灣的高山茶以清香聞名，茶農在清晨採摘嫩葉，經過日光萎凋與室內靜置，再以炒菁和揉捻定型。" * 3
    lines = [json.dumps({"text": good + f"第{i}篇。", "id": f"g{i}"}, ensure_ascii=False) for i in range(6)]
    (d / "invalid_json.jsonl").write_text(
        "\n".join(lines[:3] + ["{not json"] + lines[3:]) + "\n", encoding="utf-8"
    )
    raw = gzip.compress(("\n".join(lines) + "\n").encode())
    (d / "truncated.jsonl.gz").write_bytes(raw[: len(raw) // 2])
    (d / "bad_utf8.jsonl").write_bytes(
        lines[0].encode() + b"\n" + b'{"text": "\xff\xfe bad"}\n' + lines[1].encode() + b"\n"
    )
    (d / "empty.jsonl").write_bytes(b"")
    huge = json.dumps({"text": "長" * (50 * 2**20 // 3), "id": "huge"}, ensure_ascii=False)  # a 50 MB line
    (d / "huge.jsonl").write_text(lines[2] + "\n" + huge + "\n" + lines[4] + "\n", encoding="utf-8")
    # 3 MB of UTF-8: under the byte cap, over max_doc_chars
    long = json.dumps({"text": "長" * 1_000_100, "id": "long"}, ensure_ascii=False)
    (d / "long.jsonl").write_text(lines[1] + "\n" + long + "\n", encoding="utf-8")
    return {
        "invalid_json.jsonl": "invalid_json",
        "truncated.jsonl.gz": "truncated_gzip",
        "bad_utf8.jsonl": "invalid_utf8",
        "empty.jsonl": "empty_file",
        "huge.jsonl": "too_large",  # over input.max_unit_bytes (7 MB by default): never decoded
        "long.jsonl": "too_long",  # over input.max_doc_chars once decoded
    }


def test_bad_inputs_are_counted_and_balanced(tmp_path: Path) -> None:
    expected = write_bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert run_cli("run", str(tmp_path / "in"), "--output", str(out), "--workers", "2", "--no-progress") == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert_balanced(stats)
    files = stats["bad_inputs"]["files"]
    for name, reason in expected.items():
        matches = [f for f in files if f.endswith(name)]
        assert matches, (name, files)
        assert reason in files[matches[0]]
        assert stats["documents"]["unreadable"].get(reason, 0) >= 1
    # strict mode turns the same run into a failure
    assert (
        run_cli(
            "run", str(tmp_path / "in"), "--output", str(out), "--workers", "2", "--no-progress", "--strict"
        )
        == 3
    )


def test_nothing_readable_exits_nonzero(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.jsonl").write_bytes(b"")
    assert run_cli("run", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--no-progress") == 2


def test_missing_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("run", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "out")) == 1
    assert "nope.jsonl" in capsys.readouterr().err


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path, sample_run: Path) -> None:
    """Finish only part of the first stage, leave a half-written file behind, then rerun the command."""
    out = tmp_path / "resumed"
    plan = plan_run([str(SAMPLE)], out, load_config(None), workers=2, tasks=2)
    check_output_dir(plan)
    stages = build_stages(plan, progress=False)
    first = make_executors(plan, stages)[0]
    first.local_tasks, first.local_rank_offset = 1, 0  # rank 0 completes, rank 1 "was killed"
    first.run()
    (plan.work / "filtered").mkdir(parents=True, exist_ok=True)
    (plan.work / "filtered" / "00001.jsonl").write_text('{"text": "half-writ', encoding="utf-8")
    assert not (plan.work / "logs" / "filter" / "completions" / "00001").exists()

    assert (
        run_cli("run", str(SAMPLE), "--output", str(out), "--workers", "2", "--tasks", "2", "--no-progress")
        == 0
    )
    clean = tmp_path / "clean"
    assert (
        run_cli("run", str(SAMPLE), "--output", str(clean), "--workers", "2", "--tasks", "2", "--no-progress")
        == 0
    )
    assert shard_bytes(out) == shard_bytes(clean)
    s1 = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    s2 = json.loads((clean / "stats.json").read_text(encoding="utf-8"))
    assert s1["documents"] == s2["documents"]
    assert_balanced(s1)


def test_kill_with_signal_then_resume(tmp_path: Path) -> None:
    """A real SIGKILL of the CLI mid-run; the rerun completes and matches an uninterrupted run."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        (inputs / f"part{i}.warc.wet.gz").write_bytes(SAMPLE.read_bytes())
    out, clean = tmp_path / "out", tmp_path / "clean"
    cmd = [sys.executable, "-m", "zhtw.corpus.cli", "run", str(inputs), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(
        [*cmd, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    completions = out / "_work" / "logs" / "filter" / "completions"
    try:
        for _ in range(600):
            if proc.poll() is not None or (completions.is_dir() and any(completions.iterdir())):
                break
            import time

            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait()
    subprocess.run([*cmd, "--output", str(out)], check=True, capture_output=True)
    subprocess.run([*cmd, "--output", str(clean)], check=True, capture_output=True)
    assert read_shards(out) == read_shards(clean)
    assert_balanced(json.loads((out / "stats.json").read_text(encoding="utf-8")))


def test_parquet_output(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    cfg = tmp_path / "c.yaml"
    cfg.write_text("output:\n  format: parquet\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_cli("run", str(SAMPLE), "--output", str(out), "--config", str(cfg), "--no-progress") == 0
    files = sorted((out / "shards").rglob("*.parquet"))
    assert files
    table = pq.read_table(files[0])
    assert set(table.column_names) >= {"text", "id", "url", "source", "script", "converted"}
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == stats["documents"]["written"]


@pytest.mark.slow
def test_slurm_jobs_are_built_and_run_correctly(tmp_path: Path, sample_run: Path) -> None:
    """Stand-ins for `sbatch`/`scontrol` record each job; running its array tasks reproduces the local run."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    sbatch = bindir / "sbatch"
    sbatch.write_text(
        "#!/usr/bin/env bash\n"
        f"n=$(ls {jobs} | wc -l); n=$((n+1)); mkdir -p {jobs}/$n\n"
        f'for a in "$@"; do echo "$a" >> {jobs}/$n/args; done\n'
        f'cp "${{@: -1}}" {jobs}/$n/script\n'
        'echo "Submitted batch job $((1000+n))"\n',
        encoding="utf-8",
    )
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    scontrol = bindir / "scontrol"  # `scontrol show hostnames NODELIST`, used inside jobs
    scontrol.write_text('#!/usr/bin/env bash\necho "$3"\n', encoding="utf-8")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zhtw.corpus.cli",
            "run",
            str(SAMPLE),
            "--output",
            str(out),
            "--executor",
            "slurm",
            "--slurm-partition",
            "cpu",
            "--slurm-time",
            "01:00:00",
            "--no-progress",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    submitted = sorted((p for p in jobs.iterdir()), key=lambda p: int(p.name))
    scripts = [(p / "script").read_text() for p in submitted]
    pipeline_jobs = [s for s in scripts if "launch_pickled_pipeline" in s]
    assert len(pipeline_jobs) == 6  # one array job per stage
    assert all("#SBATCH --partition=cpu" in s and "#SBATCH --time=01:00:00" in s for s in pipeline_jobs)
    assert all(f"source {sys.prefix}/bin/activate" in s for s in pipeline_jobs)
    # later stages depend on earlier ones
    dep_args = [
        (p / "args").read_text() for p in submitted if "launch_pickled_pipeline" in (p / "script").read_text()
    ]
    assert all("--dependency=afterok:" in a for a in dep_args[1:])
    # run the recorded array tasks in order, as Slurm would
    bindir_py = Path(sys.executable).parent
    for s in pipeline_jobs:
        m = re.search(r"#SBATCH --array=0-(\d+)", s)
        pik = re.search(r"launch_pickled_pipeline (\S+)", s).group(1)
        for i in range(int(m.group(1)) + 1):
            subprocess.run(
                [str(bindir_py / "launch_pickled_pipeline"), pik],
                check=True,
                capture_output=True,
                env={**env, "SLURM_ARRAY_TASK_ID": str(i), "SLURM_NODELIST": "localhost"},
            )
    assert run_cli("stats", str(out)) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert_balanced(stats)
    local = json.loads((sample_run / "stats.json").read_text(encoding="utf-8"))
    assert stats["documents"] == local["documents"]
    assert read_shards(out) and {r["id"] for r in read_shards(out)} == {
        r["id"] for r in read_shards(sample_run)
    }


@pytest.mark.slow
def test_ray_executor_local_mode(tmp_path: Path, sample_run: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        plan = plan_run([str(SAMPLE)], tmp_path / "out", load_config(None), workers=2)
        check_output_dir(plan)
        stats = run_local(plan, executor="ray", progress=False, echo=lambda s: None)
    finally:
        ray.shutdown()
    assert_balanced(stats)
    local = json.loads((sample_run / "stats.json").read_text(encoding="utf-8"))
    assert stats["documents"] == local["documents"]


@pytest.mark.shared_data
def test_real_simplified_web_text_is_converted(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = shared_data / "corpus" / "eval" / "zhcn_web_cc.jsonl.gz"
    assert run_cli("run", str(src), "--output", str(out), "--no-progress") == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert_balanced(stats)
    records = read_shards(out)
    assert records
    simp = script_tables().simplified_only
    leftover = {c for r in records for c in r["text"] if c in simp}
    assert not leftover, sorted(leftover)[:20]
    assert all(detect_script(r["text"]).label in ("traditional", "none") for r in records)


@pytest.mark.shared_data
def test_real_crawl_records(shared_data: Path, tmp_path: Path) -> None:
    """Genuine CC WET/WARC, a wget WARC and CCNet JSON: all read, spam dropped, accounting balanced."""
    web = shared_data / "web"
    out = tmp_path / "out"
    inputs = [
        web / "whirlwind.warc.wet.gz",
        web / "whirlwind.warc.gz",
        web / "dolma_sample-0000.warc.gz",
        web / "chinesewebtext_cc_2021-43.jsonl.gz",
    ]
    assert run_cli("run", *map(str, inputs), "--output", str(out), "--no-progress") == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert_balanced(stats)
    d = stats["documents"]
    assert d["read"] >= 100 + 22 + 1
    # keyword footers are boilerplate now: pages whose spam was in them are spam_injection
    assert d["dropped"].get("spam", 0) + d["dropped"].get("spam_injection", 0) >= 15
    assert d["dropped"].get("spam_injection", 0) >= 3
    records = read_shards(out)
    assert records and all(r["url"] for r in records)
    assert all(r["script"] in ("traditional", "simplified", "mixed") for r in records)


def test_corpus_stage_imports_and_runs_without_torch(tmp_path: Path) -> None:
    """People run the corpus stage on CPU clusters without torch: block it and run the CLI."""
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "from zhtw.corpus.cli import main\n"
        f"sys.exit(main(['run', {str(SAMPLE)!r}, '--output', {str(tmp_path / 'out')!r}, '--workers', '1', '--quiet']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "balanced" in proc.stdout
