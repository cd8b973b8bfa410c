"""The ground-floor file helpers: atomic writes, ownership marker, overlap refusal, the output lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
