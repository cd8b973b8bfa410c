"""The four-stage demo (`python -m zhtw.pretrain.demo`) and the four stages on the real stories260K model."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("gguf")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_command_runs_all_four_stages(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "zhtw.pretrain.demo", "--output", str(out), "--steps", "60"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout
    for stage in ("1/4 corpus", "2/4 tokenizer", "3/4 pretrain", "4/4 export", "=== artifacts"):
        assert stage in printed, stage
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["corpus"]["documents_written"] > 100
    assert summary["tokenizer"]["chars_per_token_after"] > summary["tokenizer"]["chars_per_token_before"]
    assert summary["pretrain"]["steps"] == 60
    assert summary["pretrain"]["eval_loss_after"] < summary["pretrain"]["eval_loss_before"]
    export = out / "export"
    assert (
        summary["export"]["gguf"] == str(export / "model-q8_0.gguf")
        and Path(summary["export"]["gguf"]).is_file()
    )
    assert (export / "README.md").is_file() and (export / "model.safetensors").is_file()
    assert json.loads((export / "zhtw_export.json").read_text())["verify"]["passed"]
    assert summary["export"]["sample"].startswith("臺灣的")
    for path in (
        summary["corpus"]["shards"],
        summary["tokenizer"]["report"],
        summary["pretrain"]["loss_plot"],
    ):
        assert path in printed and Path(path).exists()


def _write_jsonl(src: Path, dst: Path, max_bytes: int) -> None:
    written = 0
    with gzip.open(src, "rt", encoding="utf-8") as f, dst.open("w", encoding="utf-8") as out:
        for line in f:
            out.write(line)
            written += len(line.encode())
            if written >= max_bytes:
                break


@pytest.mark.slow
@pytest.mark.shared_data
def test_four_stages_on_stories260k(shared_data, tmp_path):
    """Real base: tokenizer -> prepare -> train (tiny-cpu.yaml) -> export; the merged model loads and generates."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zhtw.pretrain.export import main as export_main
    from zhtw.pretrain.prepare import prepare_model
    from zhtw.pretrain.train import main as train_main
    from zhtw.tokenizer.cli import main as tok_main

    base = shared_data / "models/stories260K"
    text = tmp_path / "text"
    text.mkdir()
    _write_jsonl(shared_data / "corpus/train/hongloumeng.jsonl.gz", text / "hongloumeng.jsonl", 150_000)
    tok_main(["build", "--base", str(base), "--corpus", str(text), "--output", str(tmp_path / "tok"),
              "--vocab-size", "640", "--quiet", "--workers", "1"])  # fmt: skip
    prepare_model(str(base), str(tmp_path / "tok"), str(tmp_path / "prepared"), log=lambda _: None)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main([str(REPO / "configs/tiny-cpu.yaml"), "--model_path", str(tmp_path / "prepared"),
                    "--data_files", str(text), "--output_dir", str(tmp_path / "train"), "--block_size", "64",
                    "--max_steps", "20", "--save_steps", "20", "--eval_steps", "10", "--logging_steps", "5",
                    "--disable_tqdm", "true"]) == 0  # fmt: skip
        assert export_main(["--model", str(tmp_path / "prepared"), "--adapter", str(tmp_path / "train"),
                            "--output", str(tmp_path / "export"), "--dtype", "fp32", "--gguf", "f16"]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(old)
    out = tmp_path / "export"
    meta = json.loads((out / "zhtw_export.json").read_text())
    assert meta["verify"]["passed"] and meta["verify"]["max_abs_diff"] < 1e-3
    assert meta["gguf"]["read_back"]["tokens"] == 640
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == len(tok) == 640 and model.config.tie_word_embeddings
    ids = tok("Once upon a time,", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**ids, max_new_tokens=20, do_sample=False)
    text_out = tok.decode(generated[0], skip_special_tokens=True)
    assert text_out.startswith("Once upon a time,") and len(text_out) > len("Once upon a time,") + 10
    card = (out / "README.md").read_text()
    # a local base without a hub id: no base_model in the card (never the folder's name), a name of our own
    assert "base_model:" not in card and "model_name: stories260K-zhtw" in card and "| pieces added | 128 |" in card


def test_demo_overwrite_never_deletes_a_directory_it_did_not_create(tmp_path):
    """`make demo` passes --overwrite: a user's own directory as --output must survive it untouched."""
    from zhtw.pretrain.demo import run_demo

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("irreplaceable", encoding="utf-8")
    with pytest.raises(SystemExit, match="not created by the zhtw demo"):
        run_demo(mine, overwrite=True)
    assert (mine / "thesis.txt").read_text(encoding="utf-8") == "irreplaceable"
