"""The one command-line contract of zhtw-corpus, zhtw-tok, zhtw-pretrain and zhtw-export (zhtw.common.cli).

`main(argv) -> int` everywhere; --version; a refusal is one line `PROG: error: ...` and exit 1; a usage error is
one line and exit 2; a missing optional dependency names the extra; `zhtw-pretrain export` is `zhtw-export`;
the same option spellings (--workers, --quiet, one dtype vocabulary) with the old ones still accepted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zhtw.common.cli import version
from zhtw.corpus.cli import main as corpus_main
from zhtw.pretrain.cli import main as pretrain_main
from zhtw.pretrain.export import main as export_main
from zhtw.tokenizer.cli import main as tok_main

REPO = Path(__file__).resolve().parents[1]
MAINS = {"zhtw-corpus": corpus_main, "zhtw-tok": tok_main, "zhtw-pretrain": pretrain_main, "zhtw-export": export_main}


def _one_error_line(capsys: pytest.CaptureFixture[str], prefix: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith(f"{prefix}: error: "), err
    return err


@pytest.mark.parametrize("prog", sorted(MAINS))
def test_version_everywhere(prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert MAINS[prog](["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(prog) and f"zhtw {version()}" in out


@pytest.mark.parametrize(
    ("prog", "argv"),
    [
        ("zhtw-corpus", ["run"]),  # no INPUT, no --output
        ("zhtw-corpus", ["run", "x", "--output", "o", "--workers", "0"]),
        ("zhtw-tok", ["build", "--base", "b"]),
        ("zhtw-tok", ["frobnicate"]),
        ("zhtw-export", ["--model", "m"]),
        ("zhtw-export", ["--model", "m", "--adapter", "a", "--output", "o", "--dtype", "float8"]),
    ],
)
def test_usage_errors_exit_2_with_one_line(prog: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert MAINS[prog](argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(prog) and ": error: " in err and f"(see {prog}" in err, err


def test_unknown_pretrain_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert pretrain_main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_refusals_exit_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing")
    assert corpus_main(["stats", missing]) == 1
    assert "not a zhtw-corpus output directory" in _one_error_line(capsys, "zhtw-corpus")
    assert tok_main(["verify", missing]) == 1
    _one_error_line(capsys, "zhtw-tok verify")
    assert pretrain_main(["prepare", "--base", missing, "--tokenizer", missing, "--output", str(tmp_path / "o")]) == 1
    _one_error_line(capsys, "zhtw-pretrain prepare")
    assert export_main(["--model", missing, "--adapter", missing, "--output", str(tmp_path / "o")]) == 1
    assert "missing" in _one_error_line(capsys, "zhtw-export")
    assert not (tmp_path / "o").exists()


def test_pretrain_export_is_zhtw_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", str(tmp_path / "nothing"), "--adapter", str(tmp_path), "--output", str(tmp_path / "o")]
    assert export_main(argv) == 1
    direct = capsys.readouterr()
    assert pretrain_main(["export", *argv]) == 1
    assert capsys.readouterr() == direct
    assert pretrain_main(["export", "--help"]) == 0
    assert "--base-model-id" in capsys.readouterr().out


def test_old_spellings_still_work_with_a_note(caplog: pytest.LogCaptureFixture) -> None:
    from zhtw.pretrain.export.merge import _parser as export_parser
    from zhtw.tokenizer.cli import _parser as tok_parser

    args = tok_parser().parse_args(["build", "--base", "b", "--corpus", "c", "--output", "o", "--num-threads", "3"])
    assert args.workers == 3 and "--num-threads is deprecated; use --workers" in caplog.text
    base = ["--model", "m", "--adapter", "a", "--output", "o"]
    assert export_parser().parse_args([*base, "--dtype", "bf16"]).dtype == "bfloat16"
    assert export_parser().parse_args([*base, "--dtype", "float16"]).dtype == "float16"
    assert export_parser().parse_args([*base, "--verify", "float32"]).verify == "fp32"
    assert export_parser().parse_args(base).quiet is False


def _run_without(modules: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where importing any of `modules` fails, as when the extra is missing."""
    block = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True, timeout=300)


def test_missing_extra_names_what_to_install(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "臺灣"}) + "\n", encoding="utf-8")
    tok = _run_without(
        ["sentencepiece"],
        "from zhtw.tokenizer.cli import main\n"
        f"sys.exit(main(['build', '--base', {str(tmp_path)!r}, '--corpus', {str(corpus)!r}, '--output', "
        f"{str(tmp_path / 'o')!r}]))",
    )
    assert tok.returncode == 1, tok.stderr
    assert tok.stderr.strip() == (
        "zhtw-tok build: error: this command needs sentencepiece, which is not installed: pip install 'zhtw[tok]'."
    )
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    export = _run_without(
        ["torch", "safetensors"],
        "from zhtw.pretrain.cli import main\n"
        f"sys.exit(main(['export', '--model', {str(model)!r}, '--adapter', {str(tmp_path)!r}, '--output', "
        f"{str(tmp_path / 'o')!r}]))",
    )
    assert export.returncode == 1, export.stderr
    assert export.stderr.strip().splitlines()[-1].startswith("zhtw-export: error: this command needs ")
    assert "pip install 'zhtw[train]'" in export.stderr and "Traceback" not in export.stderr
