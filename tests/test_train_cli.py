"""`zhtw-pretrain train` as a user meets it: the command-line contract, config errors that point at the fix,
``--dry-run`` as a planning tool (the shipped recipe, a base model before it is prepared, the change that makes
a run fit), the console before and during training, and the artifacts a run leaves (issue 11).

Everything runs on a tiny two-layer Llama and a 512-piece tokenizer built in-test; training runs are 2 steps.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from zhtw.pretrain.demo import english_texts, make_tiny_llama, train_base_tokenizer  # noqa: E402
from zhtw.pretrain.memory import PARAMETER_DEFINITION  # noqa: E402
from zhtw.pretrain.prepare import prepare_model  # noqa: E402
from zhtw.pretrain.train import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "llama2-7b-zhtw-qlora.yaml"
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
LLAMA2_7B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
    "tie_word_embeddings": False,
}  # fmt: skip
SENTENCES = [
    "臺灣位於東亞，是一個美麗的島嶼",
    "政府公告了新的法規，民眾應該遵守相關規定",
    "我們今天去圖書館看書，然後在公園散步",
    "資訊科技的發展改變了人們的生活方式",
    "颱風即將登陸，氣象局提醒民眾做好防災準備",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


# --------------------------------------------------------------------------------------------------------------
# the command-line contract and config errors (no model needed)


def test_version_and_exit_codes(tmp_path, capsys):
    assert main(["--version"]) == 0
    assert "zhtw-pretrain train" in capsys.readouterr().out
    # a configuration error is a usage error: exit 2, one line
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "config file" in _one_line_error(capsys)


def test_unknown_key_suggests_the_nearest(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("model_path: x\noutput_dir: y\nlerning_rate: 1.0e-4\n", encoding="utf-8")
    assert main([str(path), "--dry-run"]) == 2
    line = _one_line_error(capsys)
    assert "unknown key(s) ['lerning_rate']" in line and "did you mean learning_rate" in line
    assert main([str(RECIPE), "--dry-run", "--gradient_acumulation_steps", "2"]) == 2
    assert "did you mean --gradient_accumulation_steps" in _one_line_error(capsys)


def test_yaml_syntax_and_type_errors_name_file_line_key_and_type(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model_path: x\noutput_dir: y\nlora_r: [8\n", encoding="utf-8")
    assert main([str(path)]) == 2
    assert re.search(r"bad\.yaml line \d+, column \d+: YAML syntax error", _one_line_error(capsys))
    path.write_text("model_path: x\noutput_dir: y\nlora_r: eight\n", encoding="utf-8")
    assert main([str(path)]) == 2
    assert "lora_r must be an integer, got 'eight' in" in _one_line_error(capsys)


# --------------------------------------------------------------------------------------------------------------
# --dry-run as a planning tool


@pytest.fixture
def base_7b(tmp_path):
    """A Llama-2-7B base as downloaded (config.json only: no weights needed) and its extended tokenizer's
    metadata (61,388 pieces over 32,000); plus the same model as `prepare` would write it (61,440 rows)."""
    base = tmp_path / "llama2-7b"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(LLAMA2_7B))
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "zhtw_tokenizer.json").write_text(json.dumps({"vocab_size": 61388, "base_vocab_size": 32000}))
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "config.json").write_text(json.dumps({**LLAMA2_7B, "vocab_size": 61440}))
    (prepared / "zhtw_prepare.json").write_text(json.dumps({"new_token_ids": [32000, 61388]}))
    return {"base": base, "tok": tok, "prepared": prepared}


def _dry(capsys, *argv: str) -> str:
    assert main([*argv, "--dry-run"]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_shipped_recipe_fits_24gb_by_its_own_dry_run(base_7b, capsys):
    out = _dry(capsys, str(RECIPE), "--model_path", str(base_7b["prepared"]))
    assert "this fits on a 24 GB card" in out and "does NOT fit" not in out
    from zhtw.pretrain.train_config import load_config

    t = load_config([str(RECIPE), "--dry_run", "true"]).training
    assert t.per_device_train_batch_size <= 2
    assert (
        t.per_device_train_batch_size * t.gradient_accumulation_steps == 32
    )  # the published effective batch


def test_dry_run_that_does_not_fit_prints_the_change_that_would(base_7b, capsys):
    argv = [str(RECIPE), "--model_path", str(base_7b["prepared"]), "--block_size", "8192",
            "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "4"]  # fmt: skip
    out = _dry(capsys, *argv)
    assert "does NOT fit on a 24 GB card" in out
    change = re.search(r"to fit a 24 GB card: (.+?)  \(estimated peak", out)
    assert change, out
    flags = change.group(1).split()
    assert flags[:2] == ["--per_device_train_batch_size", "2"] and flags[2:4] == [
        "--gradient_accumulation_steps",
        "16",
    ]
    assert "this fits on a 24 GB card" in _dry(capsys, *argv, *flags)  # the suggestion does fit


def _parameters_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("parameters:"))


def test_dry_run_answers_from_a_base_config_and_the_tokenizer(base_7b, capsys):
    prepared = _parameters_line(_dry(capsys, str(RECIPE), "--model_path", str(base_7b["prepared"])))
    for model in (base_7b["base"], base_7b["base"] / "config.json"):  # the directory or the file
        out = _dry(capsys, str(RECIPE), "--model_path", str(model), "--tokenizer", str(base_7b["tok"]))
        assert _parameters_line(out) == prepared  # same rows (padded to 64) and new rows as after prepare
        assert "(29,388 new rows)" in out and PARAMETER_DEFINITION in out
    # without the tokenizer the new rows cannot be counted: refused, never a silent zero
    assert main([str(RECIPE), "--dry-run", "--model_path", str(base_7b["base"])]) == 1
    line = _one_line_error(capsys)
    assert "zhtw_prepare.json" in line and "--tokenizer DIR" in line


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_passes_dry_run(path, base_7b, tmp_path, capsys):
    model = base_7b["prepared"]
    if "tiny" in path.name:  # a stories260K-shaped prepared model (5 layers, hidden 64, 640 + pad rows)
        model = tmp_path / "tiny"
        model.mkdir()
        shape = {"vocab_size": 640, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
                 "num_attention_heads": 8, "num_key_value_heads": 4, "tie_word_embeddings": True}  # fmt: skip
        (model / "config.json").write_text(json.dumps(shape))
        (model / "zhtw_prepare.json").write_text(json.dumps({"new_token_ids": [512, 640]}))
    out = _dry(capsys, str(path), "--model_path", str(model))
    assert "fits on a" in out and "does NOT fit" not in out


# --------------------------------------------------------------------------------------------------------------
# real runs on a tiny model


def _write_jsonl(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(n):
            text = f"第{i}篇：" + "。".join(rng.sample(SENTENCES, rng.randint(2, 5))) + "。"
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny untied Llama with an English tokenizer, a 512-piece zh-TW extension, the prepared model, text."""
    from zhtw.tokenizer.cli import main as tok_main

    root = tmp_path_factory.mktemp("train_cli")
    base = root / "base"
    train_base_tokenizer(base, english_texts(2000))
    make_tiny_llama(base, 384, tied=False, seed=0)
    data = root / "data"
    data.mkdir()
    _write_jsonl(data / "zh.jsonl.gz", 200, seed=7)
    code = tok_main(["build", "--base", str(base), "--corpus", str(data), "--output", str(root / "tok"),
                     "--vocab-size", "512", "--heldout-mb", "0.001", "--no-verify", "--quiet",
                     "--workers", "1"])  # fmt: skip
    assert code in (0, None)
    prepare_model(base, root / "tok", root / "prepared", log=lambda _: None)
    return root


def _argv(tiny: Path, out: Path, *extra: str) -> list[str]:
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
        "--report_to", "tensorboard", "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(tiny):
    """A finished 2-step run (evaluation every step, a checkpoint every step) and what it printed."""
    import io
    from contextlib import redirect_stdout

    out = tiny / "run"
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(_argv(tiny, out)) == 0
    return {"out": out, "stdout": printed.getvalue()}


def _summary(out: Path) -> dict:
    return json.loads((out / "training_summary.json").read_text(encoding="utf-8"))


def test_first_evaluation_is_at_step_0_and_the_last_is_not_repeated(run):
    summary = _summary(run["out"])
    evals = [h["step"] for h in summary["log_history"] if "eval_loss" in h]
    assert evals == [0, 1, 2]  # step 0 = truly before training; one evaluation of the final weights
    assert summary["final"]["first_eval_step"] == 0
    last = [h["eval_loss"] for h in summary["log_history"] if "eval_loss" in h][-1]
    assert summary["final"]["eval_loss"] == last and summary["final"]["eval_perplexity"] > 1


def test_tensorboard_entry_is_the_event_directory(run):
    tb = _summary(run["out"])["files"]["tensorboard"]
    assert tb is not None and list(Path(tb).glob("events.out.tfevents.*"))
    assert Path(tb).resolve().is_relative_to(run["out"].resolve())


def test_one_parameter_count_in_dry_run_log_and_summary(tiny, run, capsys):
    params = _summary(run["out"])["parameters"]
    assert params["definition"] == PARAMETER_DEFINITION
    dry = _parameters_line(_dry(capsys, *_argv(tiny, tiny / "unused")))
    assert dry.startswith(f"parameters: {params['total']:,} total, {params['trainable']:,} trainable")
    assert f"trainable parameters {params['trainable']:,} of {params['total']:,}" in run["stdout"]


def test_console_plan_block_log_lines_and_artifacts(run):
    text = run["stdout"]
    plan = text[: text.index('{"step"')]  # the block comes before the first log line
    for label in ("quantization", "trainable parameters", "documents", "tokens", "blocks of 32",
                  "effective batch      2 sequences = 64 tokens per step", "steps                2",
                  "S²-Attn              on, groups of 8 tokens", "memory estimate", "output"):  # fmt: skip
        assert label in plan, label
    logs = [json.loads(line) for line in text.splitlines() if line.startswith('{"step"')]
    train_logs = [entry for entry in logs if "loss" in entry]
    assert train_logs and all(
        isinstance(e["loss"], float) and isinstance(e["learning_rate"], float) for e in train_logs
    )
    assert f"artifacts in {run['out'].resolve()}" in text and "zhtw-export --adapter" in text
    assert _summary(run["out"])["status"] == "finished"


def test_loss_plot_has_a_log_scale_only_when_the_range_is_wide():
    from zhtw.pretrain.train import wide_range

    assert wide_range([9.0, 4.0, 1.2]) and not wide_range([3.1, 2.9, 2.5]) and not wide_range([])


@pytest.mark.parametrize(
    "artifact", ["adapter", "loss.png", "training_summary.json", "checkpoint-3", "tensorboard"]
)
def test_any_artifact_of_an_earlier_run_is_refused(tiny, tmp_path, capsys, artifact):
    out = tmp_path / "out"
    out.mkdir()
    target = out / artifact
    if "." in artifact:
        target.write_text("{}")
    else:
        target.mkdir()
        (target / "keep").write_text("old run")
    assert main(_argv(tiny, out)) == 1
    line = _one_line_error(capsys)
    assert "already holds" in line and "--overwrite" in line and "--resume_from_checkpoint last" in line
    assert sorted(p.name for p in out.iterdir()) == [artifact]


def test_output_is_the_same_option_as_output_dir(tiny, tmp_path, capsys):
    """`--output` (the spelling every other command uses) names the training output directory too."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "loss.png").write_text("an earlier run")
    argv = _argv(tiny, tmp_path / "elsewhere")
    argv[argv.index("--output_dir")] = "--output"
    argv[argv.index("--output") + 1] = str(out)
    assert main(argv) == 1
    assert str(out) in _one_line_error(capsys)  # refused for *that* directory: --output reached output_dir


def test_resume_says_which_checkpoint_and_step(tiny, run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run["out"], out)
    shutil.rmtree(out / "checkpoint-2")
    assert main(_argv(tiny, out, "--resume_from_checkpoint", str(out / "checkpoint-1"))) == 0
    printed = capsys.readouterr().out
    assert f"resuming from {out / 'checkpoint-1'}: step 1 of 2" in printed
    assert f"resume from          {out / 'checkpoint-1'}" in printed


def test_summary_and_plot_are_refreshed_at_every_save(tiny, tmp_path):
    """A run killed after its first checkpoints has loss.png and a summary marked "training" beside them, and
    the directory is then described as an unfinished run (resume or overwrite)."""
    out = tmp_path / "killed"
    code = f"from zhtw.pretrain.train import main; raise SystemExit(main({_argv(tiny, out, '--max_steps', '400')!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "checkpoint-3").is_dir() and proc.poll() is None:
            time.sleep(0.5)
    finally:
        proc.kill()
        err = proc.communicate()[1].decode(errors="replace")
    assert (out / "checkpoint-3").is_dir(), err[-2000:]
    summary = _summary(out)
    assert (
        summary["status"] == "training" and summary["global_steps"] >= 2 and summary["adapter_path"] is None
    )
    assert (out / "loss.png").stat().st_size > 0
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert result.returncode == 1 and "already holds an unfinished run" in result.stderr


def test_debug_shows_the_error_and_quiet_prints_nothing(tiny, tmp_path, capsys):
    from zhtw.pretrain.train_config import ConfigError

    with pytest.raises(ConfigError, match="not found"):  # --debug: the exception itself, for the traceback
        main([str(tmp_path / "missing.yaml"), "--debug"])
    assert main(_argv(tiny, tmp_path / "quiet", "--max_steps", "1", "--quiet")) == 0
    assert capsys.readouterr().out == ""
    assert _summary(tmp_path / "quiet")["status"] == "finished"
