"""`zhtw-pretrain prepare / train` and `zhtw-export` under hostile and careless use.

Nothing the tools did not create is deleted, an earlier run is never silently overwritten, an adapter is never
merged onto another model silently, and every refusal is one line with the fix and a non-zero exit. Every case
runs the real commands on real tiny artifacts built here (an English SentencePiece base, a 2-layer Llama, a
`zhtw-tok build` extension, a real `prepare` and a real 2-step training run); each failed on the code before
its fix. Torch runs on one thread.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from zhtw.common.errors import OutputError, ZhtwError  # noqa: E402
from zhtw.common.fsutil import OWNER_MARKER, output_lock  # noqa: E402
from zhtw.pretrain.demo import english_texts, make_tiny_llama, train_base_tokenizer  # noqa: E402
from zhtw.pretrain.export import (  # noqa: E402
    AdapterMismatchError,
    ExportError,
    VerificationError,
    export,
)
from zhtw.pretrain.export import main as export_main  # noqa: E402
from zhtw.pretrain.prepare import OutputExistsError, TokenizerMismatchError, prepare_model  # noqa: E402
from zhtw.pretrain.prepare import main as prepare_main  # noqa: E402
from zhtw.pretrain.train import main as train_main  # noqa: E402
from zhtw.pretrain.train_config import ConfigError, load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [
    "臺灣位於東亞，是一個美麗的島嶼",
    "政府公告了新的法規，民眾應該遵守相關規定",
    "我們今天去圖書館看書，然後在公園散步",
    "資訊科技的發展改變了人們的生活方式",
    "這本小說描寫了家族的興衰與人情冷暖",
    "春天來了，山上的花都開了，遊客紛紛前往賞花",
    "老師在教室裡講解數學題目，學生們認真地做筆記",
    "颱風即將登陸，氣象局提醒民眾做好防災準備",
]


def _quiet(_: str) -> None:
    pass


def _documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"第{i}篇：" + "。".join(rng.sample(SENTENCES, rng.randint(2, 6))) + "。" for i in range(n)]


def _write_jsonl(path: Path, texts: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for t in texts:
            fh.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """English base tokenizer + two tiny Llamas of the same shape (other weights), a 512-piece zh-TW extension,
    both bases prepared with it, and a directory of zh-TW training text."""
    from zhtw.tokenizer.cli import main as tok_main

    root = tmp_path_factory.mktemp("hostile")
    base, other = root / "base", root / "base_other"
    train_base_tokenizer(base, english_texts(2000))
    make_tiny_llama(base, 384, tied=False, seed=0)
    other.mkdir()
    shutil.copy(base / "tokenizer.model", other / "tokenizer.model")
    make_tiny_llama(other, 384, tied=False, seed=5)
    data = root / "data"
    data.mkdir()
    _write_jsonl(data / "zh.jsonl.gz", _documents(200, seed=7))
    code = tok_main(["build", "--base", str(base), "--corpus", str(data), "--output", str(root / "tok"),
                     "--vocab-size", "512", "--heldout-mb", "0.001", "--no-verify", "--quiet",
                     "--num-threads", "1"])  # fmt: skip
    assert code in (0, None)
    prepare_model(base, root / "tok", root / "prepared", log=_quiet)
    prepare_model(other, root / "tok", root / "prepared_other", log=_quiet)
    return root


def _train_argv(tiny: Path, out: Path, *extra: str) -> list[str]:
    return [
        str(REPO / "configs/tiny-cpu.yaml"),
        "--model_path", str(tiny / "prepared"),
        "--data_files", str(tiny / "data"),
        "--data_cache_dir", str(tiny / "cache"),
        "--output_dir", str(out),
        "--block_size", "32",
        "--max_steps", "2", "--save_steps", "1", "--eval_steps", "1", "--logging_steps", "1",
        "--eval_fraction", "0.05", "--eval_max_docs", "5",
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
        "--report_to", "none", "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(tiny):
    """A finished 2-step training run on `prepared` (checkpoint-1, checkpoint-2, adapter/, summary)."""
    out = tiny / "run"
    train_main(_train_argv(tiny, out))
    assert (out / "training_summary.json").is_file() and (out / "checkpoint-2").is_dir()
    return out


def _fails(main, argv: list[str], capsys, code: int) -> str:
    """Run a CLI expecting a refusal: exit `code`, one line on stderr, no traceback; return that line."""
    try:  # main(argv) -> int (zhtw.common.cli); a SystemExit is accepted from commands not converted yet
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    assert status == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_every_stage_error_is_a_zhtw_error():
    from zhtw.pretrain.data import DataError
    from zhtw.pretrain.export.gguf_writer import GGUFExportError
    from zhtw.pretrain.prepare import PrepareError
    from zhtw.pretrain.train import TrainError

    for cls in (PrepareError, TrainError, DataError, ConfigError, ExportError, GGUFExportError):
        assert issubclass(cls, ZhtwError), cls
    assert issubclass(ConfigError, ValueError) and issubclass(TrainError, RuntimeError)


# --------------------------------------------------------------------------------------------------------------
# train: an earlier run is never overwritten silently


def test_train_refuses_a_finished_run_and_overwrite_replaces_it(tiny, run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = _snapshot(out)
    line = _fails(train_main, _train_argv(tiny, out), capsys, 1)
    assert (
        "already holds a finished run" in line
        and "--overwrite" in line
        and "--resume_from_checkpoint" in line
    )
    assert _snapshot(out) == before  # nothing touched
    # --overwrite: a 1-step run replaces everything, no checkpoint of the old run survives
    train_main(_train_argv(tiny, out, "--overwrite", "--max_steps", "1"))
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_steps"] == 1
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert (out / OWNER_MARKER).is_file()


def test_train_overwrite_never_deletes_a_foreign_directory(tiny, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "checkpoint-3").mkdir()
    line = _fails(train_main, _train_argv(tiny, out, "--overwrite"), capsys, 1)
    assert "was not created by zhtw-pretrain train" in line and "notes.txt" in line
    assert (out / "notes.txt").read_text() == "my notes" and (out / "checkpoint-3").is_dir()


def test_train_refuses_an_output_inside_an_input(tiny, capsys):
    for out in (tiny / "prepared" / "run", tiny / "data", tiny / "data" / "sub"):
        line = _fails(train_main, _train_argv(tiny, out), capsys, 1)
        assert "overlaps the input" in line, out
    assert not (tiny / "prepared" / "run").exists() and not (tiny / "data" / "sub").exists()
    assert sorted(p.name for p in (tiny / "data").iterdir()) == ["zh.jsonl.gz"]


def test_second_writer_is_refused_by_every_stage(tiny, run, tmp_path, capsys):
    out = tmp_path / "busy"
    with output_lock(out, command="test"):
        line = _fails(train_main, _train_argv(tiny, out), capsys, 1)
        assert "is writing into" in line
        line = _fails(prepare_main, ["--base", str(tiny / "base"), "--tokenizer", str(tiny / "tok"),
                                     "--output", str(out)], capsys, 1)  # fmt: skip
        assert "is writing into" in line
        line = _fails(export_main, ["--model", str(tiny / "prepared"), "--adapter", str(run / "adapter"),
                                    "--output", str(out), "--verify", "none"], capsys, 1)  # fmt: skip
        assert "is writing into" in line
    assert sorted(p.name for p in out.iterdir()) == [".zhtw-output", ".zhtw.lock"]


def test_output_path_that_is_a_file(tiny, run, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep")
    assert "not a directory" in _fails(train_main, _train_argv(tiny, f), capsys, 1)
    line = _fails(prepare_main, ["--base", str(tiny / "base"), "--tokenizer", str(tiny / "tok"),
                                 "--output", str(f)], capsys, 1)  # fmt: skip
    assert "not a directory" in line
    line = _fails(export_main, ["--model", str(tiny / "prepared"), "--adapter", str(run / "adapter"),
                                "--output", str(f)], capsys, 1)  # fmt: skip
    assert "not a directory" in line
    assert f.read_text() == "keep"


# --------------------------------------------------------------------------------------------------------------
# train: one-line errors with the fix, before any work


def _yaml(tmp_path: Path, tiny: Path, extra: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"model_path: {tiny / 'prepared'}\ndata_files: [{tiny / 'data'}]\noutput_dir: {tmp_path / 'out'}\n"
        f"quantization: none\n{extra}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("lora_r: [8\nlearning_rate: 1e-4", r"c\.yaml line 6, column \d+: YAML syntax error"),
        ("learning_rate: fast", "learning_rate must be a number, got 'fast' in"),
        ("learning_rate: -1.0e-4", "learning_rate must be a positive number"),
        ("learning_rate: .nan", "learning_rate must be a number"),
        ("per_device_train_batch_size: 0", "per_device_train_batch_size must be at least 1"),
        ("max_steps: 0", "max_steps: 0 trains nothing"),
        ("block_size: 64.5", "block_size must be an integer"),
        ("1: 2", r"unknown key\(s\) \['1'\]"),
        ("overwrite: true\nresume_from_checkpoint: last", "contradict"),
    ],
)
def test_bad_config_values_are_one_line_errors(tiny, tmp_path, capsys, extra, message):
    import re

    path = _yaml(tmp_path, tiny, extra)
    with pytest.raises(ConfigError, match=message):
        load_config([str(path)])
    line = _fails(train_main, [str(path)], capsys, 2)
    assert re.search(message, line)
    assert not (tmp_path / "out").exists()


def test_yaml_numbers_written_as_text_are_numbers(tiny, tmp_path):
    config = load_config([str(_yaml(tmp_path, tiny, 'learning_rate: 5e-5\nlora_r: "8"'))])
    assert config.training.learning_rate == 5e-5 and config.lora.lora_r == 8


def test_lora_target_matching_nothing_lists_the_layers(tiny, tmp_path, capsys):
    argv = _train_argv(tiny, tmp_path / "out", "--lora_target_modules", "q_proj", "qkv_proj")
    line = _fails(train_main, argv, capsys, 1)
    assert "['qkv_proj'] match no layer" in line
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert name in line
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint_names_the_previous_good_one(tiny, run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    weights = out / "checkpoint-2" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = _fails(train_main, _train_argv(tiny, out, "--resume_from_checkpoint", "last"), capsys, 1)
    assert "checkpoint-2 is damaged" in line and f"--resume_from_checkpoint {out / 'checkpoint-1'}" in line
    # a truncated optimizer state is caught the same way
    optimizer = out / "checkpoint-1" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    line = _fails(train_main, _train_argv(tiny, out, "--resume_from_checkpoint", str(out / "checkpoint-1")),
                  capsys, 1)  # fmt: skip
    assert "checkpoint-1 is damaged" in line and "optimizer.pt" in line and "--overwrite" in line


def test_disk_full_while_saving_is_one_line(tiny, run, tmp_path):
    """A file-size limit (RLIMIT_FSIZE: writes fail with EFBIG, as on a full disk) hit while saving a checkpoint."""
    out = tmp_path / "out"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    code = (
        "import sys, torch; torch.set_num_threads(1); from zhtw.pretrain.train import main; "
        "raise SystemExit(main(sys.argv[1:]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, *_train_argv(tiny, out)], capture_output=True, text=True,
                          preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "disk is full or a size limit was hit" in last and str(out) in last and "free space" in last


def test_one_document_dataset_reports_the_true_eval_fraction(tiny, tmp_path, capsys):
    one = tmp_path / "one"
    one.mkdir()
    _write_jsonl(one / "doc.jsonl.gz", ["。".join(SENTENCES * 3)])
    argv = _train_argv(tiny, tmp_path / "out", "--max_steps", "1")
    argv[argv.index("--data_files") + 1] = str(one)
    train_main(argv)
    err = capsys.readouterr().err
    assert "holds 1 document, so none can be held out" in err and "eval_fraction=0" not in err
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert summary["data"]["eval_fraction_actual"] == 0.0 and summary["data"]["documents_eval"] == 0
    assert "none can be held out" in summary["evaluation_note"]


def test_data_file_name_that_is_not_utf8(tiny, tmp_path):
    """Such a name is refused up front by the shared readers, by name and with the fix; no cache is left."""
    from zhtw.pretrain.data import DataError, build_packed_data

    data = tmp_path / "data"
    data.mkdir()
    name = os.path.join(os.fsencode(data), b"gazette-\xff\xfe.jsonl.gz")
    _write_jsonl(Path(os.fsdecode(name)), _documents(20, seed=3))
    with pytest.raises(DataError, match=r"gazette-\\xff\\xfe\.jsonl\.gz: the file name is not valid UTF-8; rename"):
        build_packed_data([str(data)], str(tiny / "tok"), 16, cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# --------------------------------------------------------------------------------------------------------------
# prepare


def test_prepare_refuses_a_tokenizer_edited_after_its_build(tiny, tmp_path, capsys):
    tok = tmp_path / "tok"
    shutil.copytree(tiny / "tok", tok)
    data = json.loads((tok / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["merges"] = data["model"]["merges"][:-5]  # a few merges deleted; tokenizer.model untouched
    (tok / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(TokenizerMismatchError, match=r"tokenizer\.json no longer match"):
        prepare_model(tiny / "base", tok, tmp_path / "out", log=_quiet)
    line = _fails(prepare_main, ["--base", str(tiny / "base"), "--tokenizer", str(tok), "--output",
                                 str(tmp_path / "out")], capsys, 1)  # fmt: skip
    assert "zhtw-tok build" in line and not (tmp_path / "out").exists()


def test_prepare_overwrite_clears_only_its_own_output(tiny, tmp_path):
    args = (tiny / "base", tiny / "tok")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputExistsError):
        prepare_model(*args, foreign, log=_quiet)
    with pytest.raises(OutputError, match=r"not created by zhtw-pretrain prepare.*thesis\.tex"):
        prepare_model(*args, foreign, overwrite=True, log=_quiet)
    assert (foreign / "thesis.tex").read_text() == "years of work" and (foreign / "config.json").is_file()
    # a marker-less directory of an older prepare (only its own file names) may still be replaced
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny / "prepared", legacy)
    (legacy / OWNER_MARKER).unlink()
    (legacy / "model-00001-of-00002.safetensors").write_bytes(b"stale shard")
    meta = prepare_model(*args, legacy, init="mean", overwrite=True, log=_quiet)
    assert meta["init"] == "mean" and not (legacy / "model-00001-of-00002.safetensors").exists()


def test_prepare_refuses_an_output_inside_an_input(tiny, capsys):
    for out in (tiny / "tok" / "prepared", tiny / "base"):
        line = _fails(prepare_main, ["--base", str(tiny / "base"), "--tokenizer", str(tiny / "tok"),
                                     "--output", str(out), "--overwrite"], capsys, 1)  # fmt: skip
        assert "overlaps the input" in line
    assert not (tiny / "tok" / "prepared").exists() and (tiny / "base" / "tokenizer.model").is_file()


# --------------------------------------------------------------------------------------------------------------
# export


def test_export_refuses_an_adapter_of_another_base_with_the_same_shapes(tiny, run, tmp_path, capsys):
    for adapter in (run / "adapter", run / "checkpoint-1"):
        assert json.loads((adapter / "zhtw_adapter.json").read_text())["prepared_model_identity"]
        with pytest.raises(AdapterMismatchError, match="same shapes, other weights") as exc:
            export(tiny / "prepared_other", adapter, tmp_path / "out", dtype="fp32", log=_quiet)
        assert str(tiny / "prepared") in str(exc.value) and str(tiny / "prepared_other") in str(exc.value)
    line = _fails(export_main, ["--model", str(tiny / "prepared_other"), "--adapter", str(run / "adapter"),
                                "--output", str(tmp_path / "out")], capsys, 1)  # fmt: skip
    assert "--force" in line and not (tmp_path / "out").exists()
    meta = export(
        tiny / "prepared_other", run / "adapter", tmp_path / "forced", dtype="fp32", force=True, log=_quiet
    )
    assert meta["verify"]["passed"]
    # the right base passes
    assert export(tiny / "prepared", run / "adapter", tmp_path / "ok", dtype="fp32", log=_quiet)["verify"][
        "passed"
    ]


def test_export_refuses_a_prepared_model_changed_after_prepare(tiny, run, tmp_path):
    changed = tmp_path / "prepared"
    shutil.copytree(tiny / "prepared", changed)
    shutil.copy(tiny / "prepared_other" / "model.safetensors", changed / "model.safetensors")
    with pytest.raises(
        AdapterMismatchError, match=r"changed after `zhtw-pretrain prepare`: model\.safetensors"
    ):
        export(changed, run / "adapter", tmp_path / "out", log=_quiet)


def test_verify_none_still_refuses_nan_weights(tiny, run, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    adapter = tmp_path / "adapter"
    shutil.copytree(run / "adapter", adapter)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    key = next(k for k in weights if "lora_B" in k)
    weights[key][0, 0] = float("inf")
    save_file(weights, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(VerificationError, match="NaN or inf"):
        export(tiny / "prepared", adapter, tmp_path / "out", verify="none", log=_quiet)
    assert not (tmp_path / "out" / "zhtw_export.json").exists()


def test_export_into_the_training_output_is_refused(tiny, run, capsys):
    before = _snapshot(run)
    line = _fails(export_main, ["--model", str(tiny / "prepared"), "--adapter", str(run / "adapter"),
                                "--output", str(run), "--overwrite"], capsys, 1)  # fmt: skip
    assert "overlaps the input" in line
    line = _fails(export_main, ["--model", str(tiny / "prepared"), "--adapter", str(run / "adapter"),
                                "--output", str(run / "adapter" / "merged")], capsys, 1)  # fmt: skip
    assert "overlaps the input" in line
    assert _snapshot(run) == before


def test_export_overwrite_never_deletes_a_foreign_directory(tiny, run, tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / "README.md").write_text("my project")
    (out / "index.html").write_text("<html>")
    with pytest.raises(OutputError, match="not created by zhtw-export"):
        export(tiny / "prepared", run / "adapter", out, overwrite=True, log=_quiet)
    assert (out / "README.md").read_text() == "my project" and (out / "index.html").is_file()


def test_interrupted_export_is_named_and_replaced(tiny, run, tmp_path, capsys):
    out = tmp_path / "out"
    export(tiny / "prepared", run / "adapter", out, dtype="fp32", verify="none", log=_quiet)
    # what kill -9 mid-export leaves: a marked directory, a cut shard, no zhtw_export.json
    (out / "zhtw_export.json").unlink()
    shard = out / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:1000])
    argv = ["--model", str(tiny / "prepared"), "--adapter", str(run / "adapter"), "--output", str(out),
            "--dtype", "fp32"]  # fmt: skip
    line = _fails(export_main, argv, capsys, 1)
    assert "an interrupted export" in line and "--overwrite" in line
    export_main([*argv, "--overwrite"])
    assert json.loads((out / "zhtw_export.json").read_text())["verify"]["passed"]


def test_damaged_adapter_files_are_one_line_errors(tiny, run, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    argv = ["--model", str(tiny / "prepared"), "--adapter", str(adapter), "--output", str(tmp_path / "out")]
    shutil.copytree(run / "adapter", adapter)
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", ')
    assert "adapter_config.json cannot be read" in _fails(export_main, argv, capsys, 1)
    shutil.copy(run / "adapter" / "adapter_config.json", adapter / "adapter_config.json")
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-200])
    assert "not a readable safetensors file" in _fails(export_main, argv, capsys, 1)
    (adapter / "adapter_config.json").unlink()
    assert "holds no adapter_config.json" in _fails(export_main, argv, capsys, 1)
    report = ["--model", str(tiny / "prepared"), "--adapter", str(run / "adapter"), "--output",
              str(tmp_path / "out"), "--tokenizer-report", str(tmp_path / "nope.json")]  # fmt: skip
    assert "--tokenizer-report" in _fails(export_main, report, capsys, 1)
    assert not (tmp_path / "out").exists()


def test_damaged_training_summary_is_one_line_at_export(tiny, run, tmp_path, capsys):
    """A training_summary.json whose values have the wrong type is refused by name, not used half-way."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    summary = json.loads((copy / "training_summary.json").read_text(encoding="utf-8"))
    summary["final"] = "oops"
    (copy / "training_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    argv = ["--model", str(tiny / "prepared"), "--adapter", str(copy / "adapter"), "--output", str(tmp_path / "out")]
    line = _fails(export_main, argv, capsys, 1)
    assert "training_summary.json" in line and "'final'" in line
    assert not (tmp_path / "out").exists()


def test_resume_onto_another_prepared_model_is_refused(tiny, run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    argv = _train_argv(tiny, out, "--resume_from_checkpoint", "last")
    argv[argv.index("--model_path") + 1] = str(tiny / "prepared_other")
    line = _fails(train_main, argv, capsys, 1)
    assert "checkpoint-2 was trained on the prepared model" in line and str(tiny / "prepared") in line


def test_a_single_string_where_a_list_is_expected(tiny, tmp_path):
    path = tmp_path / "c.yaml"
    head = f"model_path: {tiny / 'prepared'}\noutput_dir: {tmp_path / 'out'}\n"
    path.write_text(head + f"data_files: {tiny / 'data'}\nlora_target_modules: q_proj\n")
    config = load_config([str(path)])
    assert config.lora.lora_target_modules == ["q_proj"] and config.data.data_files == [str(tiny / "data")]
    path.write_text(head + "data_files: [a, 1]\n")
    with pytest.raises(ConfigError, match="data_files must be a list of strings"):
        load_config([str(path)])
