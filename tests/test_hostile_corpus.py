"""`zhtw-corpus` under hostile and careless use: nothing lost, nothing destroyed, one-line errors.

Every case drives the real CLI (`zhtw.corpus.cli.main`) on small real files written in tmp_path,
or the real function under test with real inputs; each failed on the code before its fix.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
from pathlib import Path

import pytest

from zhtw.common.fsutil import atomic_write_json, output_lock
from zhtw.corpus.cli import describe_os_error, main
from zhtw.corpus.config import CleanConfig, ConfigError, FilterConfig, load_config
from zhtw.corpus.text import clean_text, first_drop_reason

# Distinct Traditional Chinese paragraphs (no repeated n-grams, no duplicates of each other).
ZH_TW = [
    "臺灣的高山茶以清香聞名，茶農在清晨採摘嫩葉，經過日光萎凋與室內靜置，再以炒菁和揉捻定型。",
    "颱風季節來臨前，氣象局提醒民眾檢查門窗、清理排水溝，並準備手電筒、飲用水與常備藥品。",
    "捷運新路線通車後，沿線居民通勤時間大幅縮短，附近商圈的人潮也明顯增加，店家紛紛延長營業。",
    "這座百年老街保留了閩南式紅磚建築，假日吸引許多遊客前來品嚐傳統小吃、欣賞廟宇的精緻雕刻。",
    "研究團隊利用衛星影像分析海岸線變化，發現部分沙灘每年後退數公尺，建議政府及早規劃保護措施。",
    "圖書館推出夜間閱讀活動，邀請作家分享創作經驗，也準備了手作書籤與說故事時間，歡迎親子參加。",
]
JAPANESE = (
    "東京都は日本の首都であり、政治、経済、文化の中心地です。江戸時代には徳川幕府が置かれ、"
    "明治維新の後に東京と改称されました。現在の人口は約千四百万人で、世界有数の大都市圏を形成しています。"
)
KOREAN = (
    "서울특별시는 대한민국의 수도이며 최대 도시이다. 한강을 끼고 있으며 조선 시대부터 수도였다. "
    "漢陽은 서울의 옛 이름이며 景福宮과 昌德宮 같은 宮闕이 남아 있다. 人口는 약 천만 명이다."
)
CANTONESE = (  # colloquial: 31% of its Han characters are outside OpenCC's everyday vocabulary
    "我哋今日去咗旺角食嘢，佢話嗰間茶餐廳嘅奶茶好好飲，不過啲人排隊排到出街，冇辦法啦，"
    "唯有聽日再嚟。你睇下呢張相，係咪好正？我覺得佢哋啲蛋撻都唔錯，下次再去。"
    "琴晚我喺屋企瞓唔着，諗住搵啲嘢食，點知雪櫃乜都冇，唯有落街買咗個杯麵。阿媽話我咁夜仲唔瞓覺，聽朝實攰到嬲。"
    "你哋嚟唔嚟？佢話冇所謂，啱啱先至食咗嘢，唔使畀錢喎。嗰啲嘢係佢哋嘅，唔好亂咁搵嚟用。"
)


def run_cli(*args: str) -> int:
    return main(list(args))


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": t, "id": f"d{i}"}, ensure_ascii=False) for i, t in enumerate(texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_inputs(d: Path) -> Path:
    write_jsonl(d / "news.jsonl", ZH_TW)
    return d


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def run(inputs: Path | str, out: Path | str, *extra: str) -> int:
    return run_cli("run", str(inputs), "--output", str(out), "--workers", "1", "--no-progress", *extra)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("zhtw-corpus: error:")]
    assert len(lines) == 1, err
    return lines[0]


def texts_written(out: Path) -> list[str]:
    texts = []
    for p in sorted((out / "shards").rglob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    return texts


# --------------------------------------------------------------------------- 1. data loss


@pytest.mark.parametrize("where", ["equal", "inside_input", "contains_input"])
def test_overwrite_never_deletes_inputs(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = make_inputs(tmp_path / "data")
    out = {"equal": inputs, "inside_input": inputs / "out", "contains_input": tmp_path}[where]
    before = snapshot(inputs)
    assert run(inputs, out, "--overwrite") == 1
    assert snapshot(inputs) == before
    assert "overlaps the input" in one_line_error(capsys)


def test_input_file_inside_output_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    src = write_jsonl(out / "mine.jsonl", ZH_TW)
    assert run(src, out, "--overwrite") == 1
    assert src.read_text(encoding="utf-8").count("\n") == len(ZH_TW)
    assert "overlaps the input" in one_line_error(capsys)


@pytest.mark.parametrize("overwrite", [True, False])
def test_users_own_directory_is_never_cleared(
    tmp_path: Path, overwrite: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.md").write_text("my only copy", encoding="utf-8")
    (out / "run.json").write_text('{"mine": true}', encoding="utf-8")  # a file of the same name, not ours
    before = snapshot(out)
    assert run(inputs, out, *(["--overwrite"] if overwrite else [])) == 1
    assert snapshot(out) == before
    assert "did not write" in one_line_error(capsys)


def test_output_of_an_older_zhtw_is_adopted_and_reruns(tmp_path: Path) -> None:
    """A finished output without the ownership marker (zhtw before the marker) is still ours."""
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert run(inputs, out) == 0
    (out / ".zhtw-output").unlink()
    (out / ".zhtw.lock").unlink()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filters:\n  min_han_chars: 21\n", encoding="utf-8")
    assert run(inputs, out, "--config", str(cfg), "--overwrite") == 0
    assert (out / ".zhtw-output").is_file()
    assert (
        json.loads((out / "run.json").read_text())["fingerprint"]["config"]["filters"]["min_han_chars"] == 21
    )


# --------------------------------------------------------------------------- 2. one writer


def test_second_writer_is_refused_while_the_output_is_locked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    with output_lock(out, command="zhtw-corpus run"):  # a first run holds the output
        assert run(inputs, out) == 1
        assert "another zhtw-corpus run is writing" in one_line_error(capsys)
        assert not (out / "shards").exists() and not (out / "run.json").exists()
    assert run(inputs, out) == 0  # the lock went with its holder


# --------------------------------------------------------------------------- 3. stale output


def test_input_changed_in_place_with_same_size_is_noticed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert run(inputs, out) == 0
    src = inputs / "news.jsonl"
    old = src.read_text(encoding="utf-8")
    new = old.replace("高山茶", "烏龍茶")  # same byte length
    assert len(new.encode()) == len(old.encode()) and new != old
    st = src.stat()
    src.write_text(new, encoding="utf-8")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old modification time
    capsys.readouterr()
    assert run(inputs, out) == 1
    assert "news.jsonl changed since that run" in one_line_error(capsys)
    assert run(inputs, out, "--overwrite") == 0
    written = "".join(texts_written(out))
    assert "烏龍茶" in written and "高山茶" not in written


def test_deleted_output_shard_is_noticed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert run(inputs, out) == 0
    expected = texts_written(out)
    shard = next((out / "shards").rglob("*.jsonl.gz"))
    shard.unlink()
    capsys.readouterr()
    assert run(inputs, out) == 1
    assert "lost its output shard" in one_line_error(capsys)
    assert run(inputs, out, "--overwrite") == 0
    assert texts_written(out) == expected


def test_truncated_run_json_is_a_clear_error_and_overwrite_recovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert run(inputs, out) == 0
    run_json = out / "run.json"
    run_json.write_bytes(run_json.read_bytes()[:40])
    capsys.readouterr()
    assert run(inputs, out) == 1
    assert "run.json is unreadable" in one_line_error(capsys)
    assert run(inputs, out, "--overwrite") == 0
    assert json.loads(run_json.read_text())["shards"]


# --------------------------------------------------------------------------- 4. every bad file named


def test_every_bad_file_is_named_in_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    good = [json.dumps({"text": t}, ensure_ascii=False) for t in ZH_TW]
    (inputs).mkdir()
    (inputs / "a_many_bad.jsonl").write_text("\n".join(good + ["{broken"] * 1100) + "\n", encoding="utf-8")
    (inputs / "b_one_bad.jsonl").write_text("\n".join(["{broken too", *good[:1]]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert (
        run_cli("run", str(inputs), "--output", str(out), "--tasks", "1", "--workers", "1", "--no-progress")
        == 0
    )
    console = capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    files = stats["bad_inputs"]["files"]
    assert files[str(inputs / "a_many_bad.jsonl")] == {"invalid_json": 1100}
    assert files[str(inputs / "b_one_bad.jsonl")] == {"invalid_json": 1}
    examples = stats["bad_inputs"]["examples"]
    per_file = {s: sum(e["source"] == s for e in examples) for s in files}
    assert per_file == {str(inputs / "a_many_bad.jsonl"): 20, str(inputs / "b_one_bad.jsonl"): 1}
    assert "b_one_bad.jsonl: invalid_json=1" in console
    d = stats["documents"]
    assert d["read"] == d["written"] + sum(d["dropped"].values()) + sum(d["unreadable"].values())


# --------------------------------------------------------------------------- 5. other languages


def test_japanese_korean_cantonese_are_dropped_with_their_own_reasons(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    write_jsonl(inputs / "mixed_langs.jsonl", [JAPANESE, KOREAN, CANTONESE, *ZH_TW[:2]])
    out = tmp_path / "out"
    assert run(inputs, out) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    dropped = stats["documents"]["dropped"]
    assert dropped.get("japanese") == 1 and dropped.get("korean") == 1 and dropped.get("cantonese") == 1
    assert stats["documents"]["written"] == 2
    assert "mixed" not in stats["scripts"]


def test_cantonese_is_not_mojibake_and_can_be_kept() -> None:
    keep = FilterConfig(max_cantonese_fraction=1.0)
    assert first_drop_reason(CANTONESE, keep) is None  # kept, and not taken for mojibake
    assert first_drop_reason(CANTONESE, FilterConfig()) == "cantonese"
    # zh-TW text with one or two Cantonese-looking characters (a quote) stays
    assert first_drop_reason(ZH_TW[0] + "他說「冇問題」。" + ZH_TW[1], FilterConfig()) is None
    # UTF-8 decoded as GBK (which yields kana as well) is still mojibake, not Japanese
    garbled = ("".join(ZH_TW)).encode("utf-8").decode("gbk", errors="replace").replace("\ufffd", "")
    assert first_drop_reason(garbled, FilterConfig()) == "mojibake"


# --------------------------------------------------------------------------- 6. config and arguments


@pytest.mark.parametrize(
    "key,value",
    [("max_ngram_dup_fraction", ".nan"), ("min_han_ratio", ".NaN"), ("spam_min_density", ".inf")],
)
def test_non_finite_thresholds_are_refused(
    tmp_path: Path, key: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN fails every comparison and inf passes every minimum: either would switch a filter off."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"filters:\n  {key}: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"filters.{key} must be a finite number"):
        load_config(cfg)
    assert run(make_inputs(tmp_path / "in"), tmp_path / "out", "--config", str(cfg)) == 1
    assert f"filters.{key} must be a finite number" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag,value", [("--workers", "0"), ("--workers", "-3"), ("--tasks", "0")])
def test_zero_or_negative_counts_are_usage_errors(
    tmp_path: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(make_inputs(tmp_path / "in")), "--output", str(tmp_path / "out"), flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "must be >= 1" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_yaml_syntax_error_is_one_line_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("filters:\n  min_han_chars: 20\n\n  min_han_ratio: 0.5: 3\n", encoding="utf-8")
    assert run(make_inputs(tmp_path / "in"), tmp_path / "out", "--config", str(cfg)) == 1
    line = one_line_error(capsys)
    assert str(cfg) in line and ", line 4" in line and "not valid YAML" in line


def test_config_that_is_not_utf8_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "big5.yaml"
    cfg.write_bytes("filters:\n  spam_extra_keywords: [賭盤]\n".encode("big5"))
    assert run(make_inputs(tmp_path / "in"), tmp_path / "out", "--config", str(cfg)) == 1
    assert "not a UTF-8 text file" in one_line_error(capsys)


# --------------------------------------------------------------------------- 7. emoji


def test_zwj_emoji_sequences_survive_cleaning_but_stray_zero_widths_do_not() -> None:
    family, flag, black_cat, heart_fire = "👨\u200d👩\u200d👧", "🏳️\u200d🌈", "🐈\u200d⬛", "❤️\u200d🔥"
    text = f"全家{family}出遊，舉著{flag}旗，還有{black_cat}與{heart_fire}。中\u200d文\u200b字\u200d"
    cleaned = clean_text(text, CleanConfig())
    assert cleaned == f"全家{family}出遊，舉著{flag}旗，還有{black_cat}與{heart_fire}。中文字"


# --------------------------------------------------------------------------- 8. unusable outputs


def test_output_path_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me", encoding="utf-8")
    assert run(make_inputs(tmp_path / "in"), target) == 1
    assert "is not a directory" in one_line_error(capsys)
    assert target.read_text(encoding="utf-8") == "keep me"


def test_output_under_a_file_or_in_proc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = make_inputs(tmp_path / "in")
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    for out in (tmp_path / "afile" / "out", Path("/proc/zhtw-no-such-dir/out")):
        if str(out).startswith("/proc") and not Path("/proc").is_dir():
            continue
        assert run(inputs, out) == 1
        assert "cannot create the output directory" in one_line_error(capsys)


def test_disk_full_is_described_in_one_line() -> None:
    """A real ENOSPC from the kernel (/dev/full), formatted as the CLI prints it."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available")
    with pytest.raises(OSError) as e, open("/dev/full", "wb", buffering=0) as f:
        f.write(b"x")
    assert e.value.errno == errno.ENOSPC
    err = e.value
    err.filename = "/data/out/shards/00000.jsonl.gz"
    line = describe_os_error(err)
    assert "\n" not in line
    assert line.startswith("/data/out/shards/00000.jsonl.gz: No space left on device; the disk is full")
    assert "rerun the same command to resume" in line


# --------------------------------------------------------------------------- 9. metadata files


def test_metadata_is_written_atomically_with_an_ordinary_mode(tmp_path: Path) -> None:
    """run.json and stats.json go through atomic_write_json, whose files get the mode an ordinary
    write gives (mkstemp alone makes them 0600: unreadable for the rest of a team)."""
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
        out = tmp_path / "out"
        assert run(make_inputs(tmp_path / "in"), out) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
    for name in ("run.json", "stats.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["shards"]  # recorded at the end
    assert not list(out.glob(".*.tmp"))


# --------------------------------------------------------------------------- 10. found while hunting


def test_stats_rebuilds_a_damaged_stats_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(make_inputs(tmp_path / "in"), out) == 0
    good = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    (out / "stats.json").write_text('{"documents": ', encoding="utf-8")  # cut short by an old crash
    assert run_cli("stats", str(out)) == 0
    assert "balanced" in capsys.readouterr().out
    assert json.loads((out / "stats.json").read_text(encoding="utf-8"))["documents"] == good["documents"]


def test_a_key_given_twice_in_yaml_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PyYAML keeps the last of two equal keys: the first setting would be ignored without a word."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filters:\n  min_han_chars: 50\n  max_chars: 9000\n  min_han_chars: 5\n", encoding="utf-8")
    assert run(make_inputs(tmp_path / "in"), tmp_path / "out", "--config", str(cfg)) == 1
    line = one_line_error(capsys)
    assert "line 4" in line and "'min_han_chars' is given twice" in line


def test_rerun_with_other_task_count_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = make_inputs(tmp_path / "in")
    write_jsonl(inputs / "more.jsonl", ZH_TW[::-1])
    out = tmp_path / "out"
    assert run(inputs, out, "--tasks", "1") == 0
    capsys.readouterr()
    assert run(inputs, out, "--tasks", "2") == 1
    assert "give --tasks 1 to resume it" in one_line_error(capsys)


def test_slurm_without_partition_touches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(make_inputs(tmp_path / "in"), out, "--executor", "slurm") == 1
    assert "--slurm-partition" in one_line_error(capsys)
    assert not out.exists()


# --------------------------------------------------------------------------- 6. what the input scan skips


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_broken_link_and_link_loop_in_an_input_dir_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """None of the three is opened (a FIFO would block the run for ever); each is one unreadable
    unit in the balance, named with its reason in stats.json and in the printed summary."""
    inputs = make_inputs(tmp_path / "in")
    os.mkfifo(inputs / "pipe.jsonl")
    os.symlink(inputs / "gone.jsonl", inputs / "dangling.jsonl")
    os.symlink(inputs, inputs / "loop")  # a directory link back to the input directory
    out = tmp_path / "out"
    assert run(inputs, out) == 0
    console = capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    expected = {
        str(inputs / "pipe.jsonl"): "not_regular_file",
        str(inputs / "dangling.jsonl"): "broken_link",
        str(inputs / "loop"): "symlink_loop",
    }
    assert {e["path"]: e["reason"] for e in stats["inputs"]["skipped"]} == expected
    assert {f: r for f, r in stats["bad_inputs"]["files"].items()} == {p: {r: 1} for p, r in expected.items()}
    d = stats["documents"]
    assert d["unreadable"] == {"broken_link": 1, "not_regular_file": 1, "symlink_loop": 1}
    assert d["read"] == len(ZH_TW) + 3 and d["written"] == len(ZH_TW) and d["balanced"]
    assert "skipped unopened" in d["accounting"]
    for path, reason in expected.items():
        assert f"skipped input: {path}: {reason}" in console
    assert run(inputs, out) == 0  # the rerun is a no-op, not "other inputs"
    assert "done, skipped" in capsys.readouterr().out


def test_too_large_jsonl_line_is_counted_and_the_rest_is_read(tmp_path: Path) -> None:
    """input.max_unit_bytes reaches the reader: the oversized line is `too_large`, never held whole."""
    inputs = tmp_path / "in"
    huge = json.dumps({"text": "大" * 20_000}, ensure_ascii=False)  # 60 KB of UTF-8
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in ZH_TW]
    inputs.mkdir()
    (inputs / "mixed.jsonl").write_text("\n".join([*lines[:3], huge, *lines[3:]]) + "\n", encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input:\n  max_unit_bytes: 50000\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run(inputs, out, "--config", str(cfg)) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["documents"]["unreadable"] == {"too_large": 1}
    assert stats["bad_inputs"]["files"] == {str(inputs / "mixed.jsonl"): {"too_large": 1}}
    assert sorted(texts_written(out)) == sorted(ZH_TW)
    assert stats["documents"]["balanced"]


def test_max_unit_bytes_is_derived_from_max_doc_chars(tmp_path: Path) -> None:
    """By default the byte cap follows input.max_doc_chars (6 bytes a character + 1 MiB): a 2 MB
    line under max_doc_chars=1000 is refused before it is decoded (too_large, not too_long)."""
    from zhtw.corpus.config import InputConfig

    assert InputConfig(max_doc_chars=1000).unit_bytes() == 6000 + 2**20
    assert InputConfig(max_doc_chars=1000, max_unit_bytes=123).unit_bytes() == 123
    inputs = tmp_path / "in"
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in ZH_TW]
    inputs.mkdir()
    huge = json.dumps({"text": "x" * 2_000_000})
    (inputs / "a.jsonl").write_text("\n".join([huge, *lines]) + "\n", encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input:\n  max_doc_chars: 1000\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run(inputs, out, "--config", str(cfg)) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["documents"]["unreadable"] == {"too_large": 1}
    assert sorted(texts_written(out)) == sorted(ZH_TW)


# --------------------------------------------------------------------------- 7. Ctrl-C


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    """A real SIGINT to the whole process group (what Ctrl-C in a terminal sends) mid-run."""
    import signal
    import subprocess
    import sys
    import time

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(8):
        texts = [f"{t}第{i}批第{j}則。" for j in range(400) for t in ZH_TW]
        write_jsonl(inputs / f"part{i}.jsonl", texts)
    cmd = [sys.executable, "-m", "zhtw.corpus.cli", "run", str(inputs), "--output", str(tmp_path / "out")]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until the first stage is running
            if line.startswith("[1/"):
                break
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        "zhtw-corpus: interrupted; rerun the same command to resume (finished tasks are kept)"
    ]


# --------------------------------------------------------------------------- 8. every reason documented


def _reasons_in_code() -> set[str]:
    """Every unreadable reason the readers and the reader step can produce, found in their source."""
    import re

    from zhtw.corpus import readers, steps

    src = Path(readers.__file__).read_text(encoding="utf-8") + Path(steps.__file__).read_text(
        encoding="utf-8"
    )
    first_arg = r"\(\s*(?:[^,()]|\([^()]*\))+,\s*"  # e.g. `(label, ` or `(show_path(directory), `
    found = set(re.findall(rf'(?:ReadIssue|_skip){first_arg}"([a-z0-9_]+)"', src))
    found |= set(re.findall(r'(?:_Framed\(None|return None), "([a-z0-9_]+)"', src))
    found |= set(re.findall(r'^\s+"([a-z0-9]+_[a-z0-9_]+)",\n\s+f?"this file is', src, re.MULTILINE))
    kinds = set(re.findall(r'_error\(\s*"([a-z]+)"', src))
    return found | {f"{k}_{c}" for k in kinds for c in ("gzip", "zstd")}


def test_every_unreadable_reason_is_documented_in_the_stats_docs() -> None:
    from zhtw.corpus import pipeline, readers

    reasons = _reasons_in_code()
    named = {"not_regular_file", "broken_link", "symlink_loop", "unreadable_dir", "unsupported_compression"}
    named |= {
        "utf16_text",
        "truncated_zstd",
        "corrupt_zstd",
        "too_large",
        "bad_content_length",
        "html_too_deep",
    }
    assert named | {"missing_text", "text_not_string"} <= reasons and len(reasons) >= 28
    stats_doc, readers_doc = pipeline.__doc__ or "", readers.__doc__ or ""
    assert [r for r in sorted(reasons) if f"``{r}``" not in stats_doc] == []
    assert [r for r in sorted(reasons - {"too_long"}) if f"\n{r} " not in readers_doc] == []
