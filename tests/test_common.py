"""The ground-floor file helpers: atomic writes, ownership marker, overlap refusal, the output lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar  # at module level: dataclasses resolves string annotations here

import pytest

from zhtw.common.errors import OutputError, ZhtwError
from zhtw.common.fsutil import (
    OWNER_MARKER,
    atomic_write_json,
    check_disjoint,
    claim_output,
    clear_owned_output,
    output_lock,
    show_path,
)


def test_atomic_write_json_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "meta.json"
    target.write_text("old", encoding="utf-8")
    atomic_write_json(target, {"名": 1})
    assert json.loads(target.read_text(encoding="utf-8")) == {"名": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    target = tmp_path / "meta.json"
    target.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert target.read_text(encoding="utf-8") == '{"a": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


@pytest.mark.parametrize("layout", ["same", "output_inside_input", "input_inside_output"])
def test_check_disjoint_refuses_overlap(tmp_path, layout):
    data = tmp_path / "data"
    data.mkdir()
    output = {"same": data, "output_inside_input": data / "out", "input_inside_output": tmp_path}[layout]
    with pytest.raises(OutputError, match="overlaps the input"):
        check_disjoint(output, [data / "x.jsonl" if layout == "input_inside_output" else data])


def test_check_disjoint_sees_through_symlinks(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    link = tmp_path / "link"
    link.symlink_to(data)
    with pytest.raises(OutputError):
        check_disjoint(link, [data])
    check_disjoint(tmp_path / "elsewhere", [data])  # disjoint: no error


def test_clear_refuses_a_directory_zhtw_did_not_create(tmp_path):
    mine = tmp_path / "user"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(OutputError, match="not created by zhtw-test"):
        clear_owned_output(mine, command="zhtw-test")
    assert (mine / "precious.txt").read_text(encoding="utf-8") == "keep"


def test_clear_empties_an_owned_directory_but_keeps_the_marker(tmp_path):
    out = claim_output(tmp_path / "out")
    (out / "sub").mkdir()
    (out / "sub" / "a").write_text("x", encoding="utf-8")
    (out / "b").write_text("y", encoding="utf-8")
    clear_owned_output(out, command="zhtw-test")
    assert sorted(p.name for p in out.iterdir()) == [OWNER_MARKER]


def test_claim_output_refuses_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="not a directory"):
        claim_output(f)


def test_output_lock_refuses_a_second_writer_in_another_process(tmp_path):
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "from zhtw.common.fsutil import output_lock\n"
        "from zhtw.common.errors import OutputError\n"
        "try:\n"
        f"    with output_lock({str(out)!r}, command='zhtw-test'):\n"
        "        sys.exit(0)\n"
        "except OutputError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    with output_lock(out, command="zhtw-test"):
        held = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert held.returncode == 3, held.stderr
    assert "another zhtw-test is writing" in held.stdout
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert free.returncode == 0, free.stdout + free.stderr


def test_show_path_escapes_names_that_are_not_utf8(tmp_path):
    name = os.fsdecode(b"bad\xff.jsonl")
    shown = show_path(tmp_path / name)
    shown.encode("utf-8")  # printable and encodable: no lone surrogates
    assert shown.endswith("bad\\xff.jsonl")


def test_output_error_is_a_zhtw_error():
    assert issubclass(OutputError, ZhtwError)


# --- zhtw.common.cli: the exit-status convention every command follows -------------------------------------


def _run(handler, argv=(), **kwargs):
    from zhtw.common.cli import ArgumentParser, add_common_options, run_main

    parser = ArgumentParser(prog="zhtw-x")
    add_common_options(parser)
    return run_main("zhtw-x", parser, handler, list(argv), **kwargs)


def _raise(exc):
    def handler(args):
        raise exc

    return handler


def test_run_main_exit_statuses_and_one_line(capsys):
    assert _run(lambda args: None) == 0 and _run(lambda args: 3) == 3
    assert _run(_raise(OutputError("out is locked;\nwait"))) == 1
    assert capsys.readouterr().err == "zhtw-x: error: out is locked; wait\n"
    assert _run(_raise(PermissionError(13, "Permission denied", "/data/x"))) == 1
    assert capsys.readouterr().err.startswith("zhtw-x: error: /data/x: Permission denied;")
    assert _run(_raise(KeyboardInterrupt())) == 130
    assert "interrupted" in capsys.readouterr().err
    assert _run(_raise(ModuleNotFoundError("No module named 'peft'", name="peft"))) == 1
    assert "pip install 'zhtw[train]'" in capsys.readouterr().err
    assert _run(lambda args: None, ["--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --bogus" in err


def test_run_main_internal_error_one_line_and_debug_shows_the_traceback(capsys):
    assert _run(_raise(ValueError("bad state"))) == 1
    err = capsys.readouterr().err
    assert err == "zhtw-x: error: internal error ValueError: bad state. Rerun with --debug for the traceback and report it.\n"
    with pytest.raises(ValueError, match="bad state"):
        _run(_raise(ValueError("bad state")), ["--debug"])


def test_usage_error_class_exits_2(capsys):
    class Usage(ZhtwError):
        pass

    assert _run(_raise(Usage("--vocab-size too small")), usage_errors=(Usage,)) == 2


def test_dtype_vocabulary():
    import argparse

    from zhtw.common.cli import parse_dtype

    assert [parse_dtype(x) for x in ("fp32", "bf16", "fp16", "float16", "auto")] == [
        "float32", "bfloat16", "float16", "float16", "auto",
    ]
    with pytest.raises(argparse.ArgumentTypeError, match="float32, bfloat16, float16"):
        parse_dtype("half")


# --- zhtw.common.meta: typed, versioned hand-off files ------------------------------------------------------


def _meta_class():
    from zhtw.common.meta import ArtifactMeta, typed

    @dataclass
    class DemoMeta(ArtifactMeta):
        FILENAME: ClassVar[str] = "demo.json"
        FORMAT: ClassVar[str | None] = "demo/1"
        MADE_BY: ClassVar[str] = "zhtw-demo build"

        size: int = typed(int)
        name: str = typed(str, default="x")

    return DemoMeta


def test_meta_round_trip_keeps_every_key_and_adds_the_schema_version(tmp_path):
    demo = _meta_class()
    (tmp_path / "demo.json").write_text(json.dumps({"format": "demo/1", "size": 3, "other": [1, 2]}))
    record = demo.read(tmp_path)  # an older file without schema_version reads as version 1
    assert record.size == 3 and record.name == "x" and record.get("other") == [1, 2]
    record.write(tmp_path)
    data = json.loads((tmp_path / "demo.json").read_text())
    assert data == {"format": "demo/1", "size": 3, "other": [1, 2], "name": "x", "schema_version": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "demo.json is missing; it is written by zhtw-demo build"),
        ("{not json", "cannot be read"),
        ('{"format": "other/1", "size": 1}', "has format 'other/1', not 'demo/1'"),
        ('{"format": "demo/1"}', "has no 'size'"),
        ('{"format": "demo/1", "size": "3"}', "'size' is '3' (str), expected int"),
        ('{"format": "demo/1", "size": true}', "'size' is True (bool), expected int"),
        ('{"format": "demo/1", "size": 1, "schema_version": 9}', "this zhtw reads up to 1"),
    ],
)
def test_meta_refusals_name_the_file_and_the_fix(tmp_path, content, words):
    from zhtw.common.meta import MetadataError

    if content is not None:
        (tmp_path / "demo.json").write_text(content)
    with pytest.raises(MetadataError, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
        _meta_class().read(tmp_path)
    assert isinstance(e.value, ZhtwError) and "\n" not in str(e.value)
