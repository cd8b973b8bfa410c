"""Readers under hostile input: wrong WARC lengths, FIFOs, link loops, deep HTML, decompression bombs,
undecodable file names, mislabelled compression and encodings, and every format the corpus stage writes.

Every case uses real files built here (warcio-written WARC/WET, real gzip/bzip2/xz/zstd bytes, real
FIFOs, datatrove's own writers) and checks the accounting rule: each unit is one document or one
issue, nothing hangs and nothing is silently lost.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import json
import lzma
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import show_path
from zhtw.corpus.readers import (
    InputError,
    RawDoc,
    ReadIssue,
    expand_inputs,
    iter_file,
    scan_inputs,
)
from zhtw.corpus.textio import TextStats, iter_texts
from zhtw.tokenizer.textfiles import read_texts

# --------------------------------------------------------------------------- builders


def _record(kind: str, payload: bytes, *, url: str, http: StatusAndHeaders | None = None) -> bytes:
    """One uncompressed WARC record as bytes, written by warcio."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    ctype = "text/plain" if kind == "conversion" else ""
    rec = writer.create_warc_record(
        url,
        kind,
        payload=io.BytesIO(payload),
        length=len(payload),
        warc_content_type=ctype,
        http_headers=http,
    )
    writer.write_record(rec)
    return buf.getvalue()


def _warcinfo() -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    writer.write_record(writer.create_warcinfo_record("test.warc", {"software": "tests"}))
    return buf.getvalue()


def _wet_texts(n: int) -> list[str]:
    return [f"文件 {i}：臺灣的第{i}篇文章。\nline two of {i}" for i in range(n)]


def _wet_records(texts: list[str]) -> list[bytes]:
    return [_warcinfo()] + [
        _record("conversion", t.encode(), url=f"https://example.org/{i}") for i, t in enumerate(texts)
    ]


def _html_response(body: bytes, url: str = "https://example.org/page") -> bytes:
    http = StatusAndHeaders(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
        protocol="HTTP/1.1",
    )
    return _record("response", body, url=url, http=http)


def _set_length(record: bytes, delta: int | None = None, value: int | None = None) -> bytes:
    """The record with its WARC Content-Length changed (the data stays as it is)."""
    m = re.search(rb"\r\nContent-Length: (\d+)\r\n", record)
    assert m is not None
    new = value if value is not None else int(m.group(1)) + (delta or 0)
    return record[: m.start(1)] + str(new).encode() + record[m.end(1) :]


def _write(path: Path, records: list[bytes], gz: bool) -> Path:
    path.write_bytes(b"".join(gzip.compress(r) for r in records) if gz else b"".join(records))
    return path


def _split(items: list[RawDoc | ReadIssue]) -> tuple[list[RawDoc], list[ReadIssue]]:
    return [i for i in items if isinstance(i, RawDoc)], [i for i in items if isinstance(i, ReadIssue)]


def _within(seconds: float, fn: Callable[[], Any]) -> Any:
    """Run `fn` in a daemon thread; fail (instead of hanging the suite) if it takes longer."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the test thread
            box["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still running after {seconds} s: it blocks or hangs")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _release_fifo(path: Path) -> None:
    """Open the FIFO for writing once, so a reader stuck on it (old code) can finish."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


# --------------------------------------------------------------------------- 1. WARC Content-Length


LENGTH_FAULTS = {
    "slightly_too_large": {"delta": 20},  # runs into the next record's WARC header
    "far_too_large": {"delta": 5000},  # runs past several records, beyond the end of the file
    "absurd": {"value": 10**12},  # larger than the unit cap as well
    "too_small": {"delta": -25},  # ends inside its own text
}


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("fault", list(LENGTH_FAULTS))
def test_wrong_content_length_costs_only_its_record(tmp_path: Path, gz: bool, fault: str) -> None:
    texts = _wet_texts(6)
    records = _wet_records(texts)
    records[2] = _set_length(records[2], **LENGTH_FAULTS[fault])  # the 2nd conversion record (text 1)
    path = _write(tmp_path / ("f.warc.wet.gz" if gz else "f.warc.wet"), records, gz)

    docs, issues = _split(list(iter_file(path)))

    assert [d.text for d in docs] == texts[:1] + texts[2:]
    assert [(i.reason, i.where) for i in issues] == [("bad_content_length", "record 3")]
    assert len(docs) + len(issues) == len(texts)  # every conversion record accounted for
    assert not any("WARC/1." in d.text or "WARC-Type" in d.text for d in docs)


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_two_bad_lengths_in_a_row_and_a_bad_last_record(tmp_path: Path, gz: bool) -> None:
    texts = _wet_texts(6)
    records = _wet_records(texts)
    records[2] = _set_length(records[2], delta=30)
    records[3] = _set_length(records[3], delta=-10)
    records[6] = _set_length(records[6], delta=40)  # the last record: nothing follows it
    path = _write(tmp_path / ("f.warc.wet.gz" if gz else "f.warc.wet"), records, gz)
    docs, issues = _split(list(iter_file(path)))
    assert [d.text for d in docs] == [texts[0], texts[3], texts[4]]
    assert [i.reason for i in issues] == ["bad_content_length", "bad_content_length", "truncated_record"]
    assert len(docs) + len(issues) == len(texts)


def test_wrong_length_in_a_warc_response_keeps_header_bytes_out_of_the_page(tmp_path: Path) -> None:
    pages = [
        f"<html><body><p>Paragraph number {i} about mountain tea farms in Taiwan.</p></body></html>"
        for i in range(4)
    ]
    records = [_warcinfo()] + [
        _html_response(p.encode(), url=f"https://example.org/{i}") for i, p in enumerate(pages)
    ]
    records[1] = _set_length(records[1], delta=60)
    path = _write(tmp_path / "pages.warc.gz", records, gz=True)
    docs, issues = _split(list(iter_file(path)))
    assert [d.url for d in docs] == [f"https://example.org/{i}" for i in (1, 2, 3)]
    assert [i.reason for i in issues] == ["bad_content_length"]
    assert not any("WARC" in d.text for d in docs)


def test_stats_balance_through_iter_texts_with_bad_lengths(tmp_path: Path) -> None:
    texts = _wet_texts(5)
    records = _wet_records(texts)
    records[3] = _set_length(records[3], delta=15)
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "f.warc.wet.gz", records, gz=True)
    stats = TextStats()
    got = list(iter_texts([tmp_path / "in"], stats=stats))
    assert got == texts[:2] + texts[3:]
    assert stats.documents + stats.unreadable == len(texts) and stats.issues == {"bad_content_length": 1}


def test_warc_truncated_inside_a_header(tmp_path: Path) -> None:
    records = _wet_records(_wet_texts(3))
    data = b"".join(records[:3]) + records[3][:40]  # the 3rd document stops inside "WARC-Type: ..."
    path = tmp_path / "cut.warc.wet"
    path.write_bytes(data)
    docs, issues = _split(list(iter_file(path)))
    assert [d.text for d in docs] == _wet_texts(2)
    assert [(i.reason, i.where) for i in issues] == [("truncated_record", "record 4")]


# --------------------------------------------------------------------------- 2. FIFOs and other non-files


def test_fifo_in_an_input_directory_is_counted_not_opened(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"text": "甲"}\n')
    fifo = folder / "pipe.jsonl"
    os.mkfifo(fifo)
    try:
        stats = TextStats()
        texts = _within(10, lambda: list(iter_texts([folder], stats=stats)))
        assert texts == ["甲"]
        assert stats.issues == {"not_regular_file": 1} and stats.files == 1
        scan = scan_inputs([folder])
        assert scan.files == [str(folder / "a.jsonl")]
        assert [(s.reason, s.source) for s in scan.skipped] == [("not_regular_file", str(fifo))]
        assert "FIFO" in scan.skipped[0].detail
        assert expand_inputs([folder]) == [str(folder / "a.jsonl")]  # never handed to hashing code
    finally:
        _release_fifo(fifo)


def test_fifo_given_directly_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.warc.wet.gz"
    os.mkfifo(fifo)
    try:
        items = _within(10, lambda: list(iter_file(fifo)))
        assert [(i.reason, i.source) for i in items] == [("not_regular_file", str(fifo))]
        with pytest.raises(
            InputError, match=r"pipe\.warc\.wet\.gz: no readable input files.*not_regular_file"
        ):
            _within(10, lambda: expand_inputs([fifo]))
    finally:
        _release_fifo(fifo)


def test_unix_socket_with_a_supported_name_is_skipped(tmp_path: Path) -> None:
    import socket

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("乙")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "s.jsonl"))
        stats = TextStats()
        assert _within(10, lambda: list(iter_texts([folder], stats=stats))) == ["乙"]
        assert stats.issues == {"not_regular_file": 1}
    finally:
        sock.close()


# --------------------------------------------------------------------------- 3. links and directories


def test_symlink_loop_and_broken_link_are_counted_and_linked_dirs_read(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_text('{"text": "a"}\n')
    (folder / "sub" / "b.jsonl").write_text('{"text": "b"}\n')
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "c.jsonl").write_text('{"text": "c"}\n')
    os.symlink(folder, folder / "sub" / "back_to_top")  # a loop
    os.symlink(tmp_path / "gone", folder / "was_a_dir")  # dangling
    os.symlink(folder / "missing.jsonl", folder / "dead.jsonl")  # dangling, supported name
    os.symlink(outside, folder / "linked")  # a linked data directory: read, not skipped
    os.symlink(folder / "self.jsonl", folder / "self.jsonl")  # a link to itself (ELOOP)

    scan = scan_inputs([folder])
    assert scan.files == sorted(
        str(p) for p in (folder / "a.jsonl", folder / "sub" / "b.jsonl", folder / "linked" / "c.jsonl")
    )
    reasons = sorted((Path(s.source).name, s.reason) for s in scan.skipped)
    assert reasons == [
        ("back_to_top", "symlink_loop"),
        ("dead.jsonl", "broken_link"),
        ("self.jsonl", "symlink_loop"),
        ("was_a_dir", "broken_link"),
    ]
    stats = TextStats()
    assert sorted(iter_texts([folder], stats=stats)) == ["a", "b", "c"]
    assert stats.issues == {"symlink_loop": 2, "broken_link": 2}


def test_input_error_is_a_zhtw_error() -> None:
    assert issubclass(InputError, ZhtwError) and issubclass(InputError, ValueError)


# --------------------------------------------------------------------------- 4. HTML without bounds


def test_deeply_nested_html_is_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    deep = ("<html><body>" + "<div>x" * 40_000 + "</body></html>").encode()
    normal = b"<html><body><p>A normal page about oolong tea from Alishan, long enough to be kept.</p></body></html>"
    unclosed = ("<html><body>" + "<p>paragraph about tea " * 3000 + "</body></html>").encode()
    records = [
        _warcinfo(),
        _html_response(deep, "https://example.org/deep"),
        _html_response(normal, "https://example.org/normal"),
        _html_response(unclosed, "https://example.org/unclosed"),
    ]
    path = _write(tmp_path / "deep.warc.gz", records, gz=True)
    for extractor in ("resiliparse", "trafilatura"):
        start = time.monotonic()
        docs, issues = _split(_within(60, lambda e=extractor: list(iter_file(path, html_extractor=e))))
        assert time.monotonic() - start < 20, extractor  # unbounded, the deep page alone takes ~40 s
        assert [(i.reason, i.where) for i in issues] == [("html_too_deep", "record 2")], extractor
        assert [d.url for d in docs] == ["https://example.org/normal", "https://example.org/unclosed"]
        assert "oolong" in docs[0].text and "paragraph about tea" in docs[1].text


# --------------------------------------------------------------------------- 5. decompression bombs


def test_jsonl_line_beyond_the_cap_is_counted_not_held(tmp_path: Path) -> None:
    bomb = b'{"text": "' + b" " * (8 << 20) + b'"}'  # 8 MiB that gzip packs into a few KB
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "before"}\n' + bomb + b'\n{"text": "after"}\n' + bomb))
    assert path.stat().st_size < 100_000
    docs, issues = _split(list(iter_file(path, max_unit_bytes=1 << 20)))
    assert [d.text for d in docs] == ["before", "after"]
    assert [(i.reason, i.where) for i in issues] == [("too_large", "line 2"), ("too_large", "line 4")]
    assert str(len(bomb)) in issues[0].detail


def test_warc_record_and_text_file_beyond_the_cap(tmp_path: Path) -> None:
    texts = _wet_texts(3)
    records = _wet_records(texts)
    records.insert(2, _record("conversion", b"x" * (3 << 20), url="https://example.org/big"))
    path = _write(tmp_path / "big.warc.wet.gz", records, gz=True)
    docs, issues = _split(list(iter_file(path, max_unit_bytes=1 << 20)))
    assert [d.text for d in docs] == texts
    assert [(i.reason, i.where) for i in issues] == [("too_large", "record 3")]

    txt = tmp_path / "big.txt.gz"
    txt.write_bytes(gzip.compress(b"y" * (3 << 20)))
    assert [i.reason for i in iter_file(txt, max_unit_bytes=1 << 20)] == ["too_large"]
    assert [len(d.text) for d in iter_file(txt, max_unit_bytes=4 << 20)] == [3 << 20]


def test_gzip_encoded_http_body_bomb_is_capped(tmp_path: Path) -> None:
    body = gzip.compress(b"<html><body>" + b"<p>a</p>" * (1 << 19) + b"</body></html>")  # 4 MiB inflated
    http = StatusAndHeaders(
        "200 OK",
        [("Content-Type", "text/html"), ("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))],
        protocol="HTTP/1.1",
    )
    records = [_warcinfo(), _record("response", body, url="https://example.org/z", http=http)]
    path = _write(tmp_path / "enc.warc.gz", records, gz=True)
    assert [i.reason for i in iter_file(path, max_unit_bytes=1 << 20)] == ["too_large"]


# --------------------------------------------------------------------------- 6. names that are not UTF-8


def test_undecodable_file_name_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jsonl").write_text('{"text": "ok"}\n')
    bad = os.path.join(os.fsencode(folder), b"bad\xff.jsonl")
    with open(bad, "wb") as f:
        f.write(b'{"text": "x"}\nnot json\n')
    with pytest.raises(InputError) as err:
        expand_inputs([folder])
    message = str(err.value)
    assert "bad\\xff.jsonl" in message and "not valid UTF-8" in message and "rename" in message
    message.encode("utf-8")  # printable on any terminal, no surrogates
    with pytest.raises(InputError):
        iter_texts([folder])


def test_undecodable_name_read_directly_gives_printable_issues(tmp_path: Path) -> None:
    bad = os.path.join(os.fsencode(tmp_path), b"bad\xff.jsonl")
    with open(bad, "wb") as f:
        f.write(b'{"text": "x"}\nnot json\n')
    docs, issues = _split(list(iter_file(os.fsdecode(bad))))
    assert [d.text for d in docs] == ["x"] and [i.reason for i in issues] == ["invalid_json"]
    assert issues[0].source == show_path(bad) and docs[0].source == show_path(bad)
    json.dumps(dataclasses.asdict(issues[0]), ensure_ascii=False).encode("utf-8")
    str(issues[0]).encode("utf-8")


# --------------------------------------------------------------------------- 7. wrong compression or encoding


def _utf16_jsonl(encoding: str) -> bytes:
    lines = "".join(json.dumps({"text": f"第{i}行 text"}, ensure_ascii=False) + "\n" for i in range(500))
    return lines.encode(encoding)


@pytest.mark.parametrize(
    ("name", "data", "reason", "hint"),
    [
        ("a.jsonl.gz", bz2.compress(b'{"text": "x"}\n' * 2000), "unsupported_compression", "bzip2"),
        ("a.jsonl", lzma.compress(b'{"text": "x"}\n' * 2000), "unsupported_compression", "xz"),
        ("a.txt", bz2.compress("一段文字".encode() * 500), "unsupported_compression", "bzip2"),
        ("a.warc.wet.gz", lzma.compress(b"WARC/1.0\r\n" * 100), "unsupported_compression", "xz"),
        ("a.jsonl", _utf16_jsonl("utf-16"), "utf16_text", "byte-order mark"),
        ("a.jsonl", _utf16_jsonl("utf-16-le"), "utf16_text", "UTF-16LE"),
        ("a.jsonl", _utf16_jsonl("utf-16-be"), "utf16_text", "UTF-16BE"),
        ("a.jsonl.gz", gzip.compress(_utf16_jsonl("utf-16")), "utf16_text", "UTF-16"),
        ("a.txt", "臺灣的一段文字。\n".encode("utf-16") * 50, "utf16_text", "UTF-16"),
        (
            "a.jsonl.gz",
            gzip.compress(gzip.compress(b'{"text": "x"}\n' * 100)),
            "unsupported_compression",
            "twice",
        ),
    ],
)
def test_mislabelled_file_is_one_issue(
    tmp_path: Path, name: str, data: bytes, reason: str, hint: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    items = list(iter_file(path))
    assert [(i.reason, i.where) for i in items] == [(reason, "file")]
    assert hint in items[0].detail


def test_zstd_under_a_plain_name_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "z1"}\n{"text": "z2"}\n'))
    assert [d.text for d in iter_file(path)] == ["z1", "z2"]


# --------------------------------------------------------------------------- 8. every corpus output format


def _docs(n: int) -> list[Any]:
    from datatrove.data import Document

    return [Document(text=f"輸出文件 {i}", id=f"d{i}", metadata={"script": "traditional"}) for i in range(n)]


@pytest.mark.parametrize("fmt", ["jsonl-zstd", "jsonl-gzip", "jsonl-none", "parquet-zstd", "parquet-snappy"])
def test_corpus_writer_output_is_readable_by_later_stages(tmp_path: Path, fmt: str) -> None:
    from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

    kind, compression = fmt.split("-")
    out = tmp_path / "shards"
    comp = None if compression == "none" else compression
    if kind == "jsonl":
        writer = JsonlWriter(str(out), output_filename="${rank}.jsonl", compression=comp)
    else:
        writer = ParquetWriter(str(out), output_filename="${rank}.parquet", compression=comp)
    for rank, docs in enumerate((_docs(3), _docs(2))):
        with writer:
            for doc in docs:
                writer.write(doc, rank=rank)
    names = sorted(p.name for p in out.iterdir())
    if fmt == "jsonl-zstd":
        assert names == ["00000.jsonl.zst", "00001.jsonl.zst"]  # what datatrove calls them
    expected = [f"輸出文件 {i}" for i in (0, 1, 2, 0, 1)]
    stats = TextStats()
    assert list(iter_texts([out], stats=stats)) == expected
    assert stats.files == 2 and stats.unreadable == 0
    assert read_texts(out) == expected
    assert read_texts(out / names[0]) == expected[:3]


def test_truncated_and_corrupt_zstd_keep_what_came_before(tmp_path: Path) -> None:
    rows = b"".join(json.dumps({"text": f"row {i}", "id": i}).encode() + b"\n" for i in range(20_000))
    frames = [zstandard.ZstdCompressor().compress(rows[k : k + 50_000]) for k in range(0, len(rows), 50_000)]
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(b"".join(frames[:3]) + frames[3][: len(frames[3]) // 2])
    docs, issues = _split(list(iter_file(cut)))
    complete = rows[:150_000].count(b"\n")
    assert len(docs) >= complete and [i.reason for i in issues] == ["truncated_zstd"]
    assert [d.id for d in docs] == [str(i) for i in range(len(docs))]

    bad = tmp_path / "bad.jsonl.zst"
    broken = bytearray(frames[1])
    for k in range(20, len(broken) - 10, 5):
        broken[k] ^= 0x5A
    bad.write_bytes(frames[0] + bytes(broken) + b"".join(frames[2:]))
    docs, issues = _split(list(iter_file(bad)))
    assert [i.reason for i in issues] == ["corrupt_zstd"]
    assert len(docs) >= rows[:50_000].count(b"\n")


# --------------------------------------------------------------------------- 9. more hostile shapes


def _encoded_response(body: bytes, encoding: str, url: str) -> bytes:
    http = StatusAndHeaders(
        "200 OK",
        [("Content-Type", "text/html"), ("Content-Encoding", encoding), ("Content-Length", str(len(body)))],
        protocol="HTTP/1.1",
    )
    return _record("response", body, url=url, http=http)


def test_brotli_encoded_responses_are_read_or_counted_never_crash(tmp_path: Path) -> None:
    brotli = pytest.importorskip("brotli")
    page = b"<html><body><p>A page about high-mountain oolong tea, served brotli-encoded.</p></body></html>"
    records = [
        _warcinfo(),
        _encoded_response(brotli.compress(page), "br", "https://example.org/br"),
        _encoded_response(page, "br", "https://example.org/not-br"),  # says br, is not
        _encoded_response(brotli.compress(page * 40_000), "br", "https://example.org/br-bomb"),
        _html_response(page, "https://example.org/plain"),
    ]
    path = _write(tmp_path / "br.warc.gz", records, gz=True)
    docs, issues = _split(list(iter_file(path, max_unit_bytes=1 << 20)))
    assert [d.url for d in docs] == ["https://example.org/br", "https://example.org/plain"]
    assert "oolong" in docs[0].text
    assert [(i.reason, i.where) for i in issues] == [
        ("corrupt_warc_record", "record 3"),
        ("too_large", "record 4"),
    ]
