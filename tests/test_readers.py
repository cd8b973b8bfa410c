"""Input layer: format detection, input expansion, per-unit accounting and every bad-input kind."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from zhtw.corpus.readers import InputError, RawDoc, ReadIssue, detect_format, expand_inputs, iter_file
from zhtw.corpus.textio import TextStats, iter_texts

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "corpus" / "sample" / "sample.warc.wet.gz"


# --------------------------------------------------------------------------- builders


def _record(
    kind: str,
    payload: bytes,
    *,
    url: str = "https://example.org/",
    gz: bool = True,
    http: StatusAndHeaders | None = None,
) -> bytes:
    """One WARC record as bytes (its own gzip member when gz)."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    content_type = "text/plain" if kind == "conversion" else ""
    rec = writer.create_warc_record(
        url,
        kind,
        payload=io.BytesIO(payload),
        length=len(payload),
        warc_content_type=content_type,
        http_headers=http,
    )
    writer.write_record(rec)
    return buf.getvalue()


def _warcinfo(gz: bool = True) -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    writer.write_record(writer.create_warcinfo_record("test.warc", {"software": "tests"}))
    return buf.getvalue()


def _wet_members(texts: list[str], gz: bool = True) -> list[bytes]:
    """warcinfo + one conversion record per text, each as bytes."""
    return [_warcinfo(gz)] + [
        _record("conversion", t.encode(), url=f"https://example.org/{i}", gz=gz) for i, t in enumerate(texts)
    ]


def _response(
    body: bytes,
    content_type: str | None = "text/html; charset=utf-8",
    status: str = "200 OK",
    url: str = "https://example.org/page",
    gz: bool = True,
) -> bytes:
    headers = [("Content-Type", content_type)] if content_type else []
    headers.append(("Content-Length", str(len(body))))
    http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
    return _record("response", body, url=url, gz=gz, http=http)


def _split(items: list) -> tuple[list[RawDoc], list[ReadIssue]]:
    docs = [i for i in items if isinstance(i, RawDoc)]
    issues = [i for i in items if isinstance(i, ReadIssue)]
    assert len(docs) + len(issues) == len(items)
    return docs, issues


def _texts(n: int, tag: str = "doc") -> list[str]:
    return [f"{tag} {i}: 臺灣的第{i}篇文章，內容足以辨認。\nsecond line {i}" for i in range(n)]


def _html(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><nav>Home | About</nav>"
        f"<article><h1>{title}</h1><p>{body}</p><p>{body} {body}</p></article></body></html>"
    )


# --------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("CC-MAIN-1.warc.wet.gz", "wet"),
        ("a.wet.gz", "wet"),
        ("a.WET", "wet"),
        ("a.warc.gz", "warc"),
        ("a.warc", "warc"),
        ("a.jsonl", "jsonl"),
        ("a.jsonl.gz", "jsonl"),
        ("a.json.gz", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.parquet", "parquet"),
        ("a.txt", "txt"),
        ("a.txt.gz", "txt"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(f"/data/{name}") == fmt


@pytest.mark.parametrize("name", ["stats.json", "a.csv", "a.gz", "README.md", "a.arc.gz"])
def test_detect_format_rejects_unsupported(name: str) -> None:
    with pytest.raises(InputError, match=r"unsupported.*\.jsonl\.gz"):
        detect_format(name)


def test_expand_inputs_dirs_globs_and_missing(tmp_path: Path) -> None:
    for rel in [
        "a.jsonl",
        "sub/b.parquet",
        "sub/deeper/c.warc.wet.gz",
        ".hidden.jsonl",
        "_tmp/d.jsonl",
        ".git/e.jsonl",
        "notes.md",
        "stats.json",
        "logs/run.log",
        "other/f.txt",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    found = expand_inputs(
        [tmp_path / "sub", tmp_path / "a.jsonl", str(tmp_path / "*.jsonl"), tmp_path / "sub"]
    )
    assert found == sorted(
        str(tmp_path / r) for r in ["a.jsonl", "sub/b.parquet", "sub/deeper/c.warc.wet.gz"]
    )
    assert expand_inputs([tmp_path]) == sorted(
        str(tmp_path / r) for r in ["a.jsonl", "sub/b.parquet", "sub/deeper/c.warc.wet.gz", "other/f.txt"]
    )
    assert expand_inputs(str(tmp_path / "**" / "*.parquet")) == [str(tmp_path / "sub/b.parquet")]
    # a named hidden file is read when asked for
    assert expand_inputs([tmp_path / ".hidden.jsonl"]) == [str(tmp_path / ".hidden.jsonl")]
    # relative paths come back absolute
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert expand_inputs(["a.jsonl"]) == [str(tmp_path / "a.jsonl")]
    finally:
        os.chdir(cwd)

    with pytest.raises(InputError, match=r"nope\.jsonl: no such file or directory.*Accepted"):
        expand_inputs([tmp_path / "a.jsonl", tmp_path / "nope.jsonl"])
    with pytest.raises(InputError, match=r"\*\.csv: pattern matches no supported"):
        expand_inputs([str(tmp_path / "*.csv")])
    with pytest.raises(InputError, match=r"logs: directory holds no supported"):
        expand_inputs([tmp_path / "logs"])
    with pytest.raises(InputError, match=r"notes\.md: unsupported file type"):
        expand_inputs([tmp_path / "notes.md"])


def test_iter_file_rejects_unsupported_name_and_extractor(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        iter_file(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="html_extractor"):
        iter_file(tmp_path / "x.warc.gz", html_extractor="bs4")


# --------------------------------------------------------------------------- WET and WARC


@pytest.mark.parametrize("gz", [True, False])
def test_wet_every_conversion_record_is_a_document(tmp_path: Path, gz: bool) -> None:
    texts = _texts(5)
    path = tmp_path / ("a.warc.wet.gz" if gz else "a.warc.wet")
    path.write_bytes(b"".join(_wet_members(texts, gz)))
    docs, issues = _split(list(iter_file(path)))
    assert issues == []
    assert [d.text for d in docs] == texts
    assert [d.url for d in docs] == [f"https://example.org/{i}" for i in range(5)]
    assert all(d.id.startswith("urn:uuid:") and d.date and d.source == str(path) for d in docs)
    assert len({d.id for d in docs}) == 5


def test_truncated_gzip_keeps_records_before_the_break(tmp_path: Path) -> None:
    members = _wet_members(_texts(10))
    data = b"".join(members)
    cut = sum(len(m) for m in members[:8]) + len(members[8]) // 2  # inside the 8th conversion record
    path = tmp_path / "cut.warc.wet.gz"
    path.write_bytes(data[:cut])
    docs, issues = _split(list(iter_file(path)))
    assert [d.text for d in docs] == _texts(7)
    assert len(issues) == 1
    assert issues[0].reason == "truncated_gzip" and issues[0].source == str(path)
    assert issues[0].where == "record 9"  # warcinfo is record 1


def test_truncated_gzip_jsonl_keeps_every_complete_line(tmp_path: Path) -> None:
    rows = [{"text": f"第{i}行 " + "字" * (i % 50), "id": f"r{i}"} for i in range(3000)]
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    data = gzip.compress(raw)
    cut = int(len(data) * 0.6)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[:cut])
    complete = zlib.decompressobj(31).decompress(data[:cut]).count(b"\n")
    docs, issues = _split(list(iter_file(path)))
    assert 0 < complete < len(rows)
    assert [d.id for d in docs] == [f"r{i}" for i in range(complete)]
    assert len(issues) == 1 and issues[0].reason == "truncated_gzip" and issues[0].source == str(path)
    assert issues[0].where == f"line {complete + 1}"


def test_corrupt_warc_record_is_skipped_and_reading_continues(tmp_path: Path) -> None:
    members = _wet_members(_texts(4))
    bad = gzip.compress(
        b"WARC/1.0\r\nWARC-Type: conversion\r\nContent-Length: many\r\n\r\nbroken\r\nbody\r\nlines\r\n\r\n"
    )
    garbage = gzip.compress(b"this is not a WARC record at all\r\n\r\n")
    path = tmp_path / "bad.warc.wet.gz"
    path.write_bytes(b"".join(members[:3] + [bad] + members[3:4] + [garbage] + members[4:]))
    docs, issues = _split(list(iter_file(path)))
    assert [d.text for d in docs] == _texts(4)
    assert [(i.reason, i.where) for i in issues] == [
        ("corrupt_warc_record", "record 4"),
        ("corrupt_warc_record", "record 6"),
    ]
    assert all(i.source == str(path) for i in issues)
    assert len(docs) + len(issues) == 6  # conversion-shaped units in the file


def test_corrupt_warc_record_in_uncompressed_file(tmp_path: Path) -> None:
    members = _wet_members(_texts(3), gz=False)
    bad = b"WARC/1.0\r\nWARC-Type: conversion\r\nthis header line has no colon\r\n\r\nbroken\r\n\r\n"
    path = tmp_path / "bad.warc.wet"
    path.write_bytes(b"".join(members[:2] + [bad] + members[2:]))
    docs, issues = _split(list(iter_file(path)))
    assert [d.text for d in docs] == _texts(3)
    assert [(i.reason, i.where) for i in issues] == [("corrupt_warc_record", "record 3")]


def test_corrupt_gzip_member_costs_only_its_record(tmp_path: Path) -> None:
    members = _wet_members(_texts(5))
    broken = bytearray(members[3])
    for k in range(30, len(broken) - 20, 7):  # scramble the deflate data, keep the header
        broken[k] ^= 0x55
    path = tmp_path / "flipped.warc.wet.gz"
    path.write_bytes(b"".join(members[:3] + [bytes(broken)] + members[4:]))
    docs, issues = _split(list(iter_file(path)))
    texts = _texts(5)
    assert [d.text for d in docs] == texts[:2] + texts[3:]
    assert [(i.reason, i.where) for i in issues] == [("corrupt_gzip", "record 4")]


def test_uncompressed_warc_cut_inside_a_record(tmp_path: Path) -> None:
    members = _wet_members(_texts(3), gz=False)
    path = tmp_path / "cut.warc.wet"
    path.write_bytes(b"".join(members[:3]) + members[3][: len(members[3]) - 30])
    docs, issues = _split(list(iter_file(path)))
    assert [d.text for d in docs] == _texts(2)
    assert [(i.reason, i.where) for i in issues] == [("truncated_record", "record 4")]


def test_warc_responses_html_and_not(tmp_path: Path) -> None:
    big5 = _html("繁體頁面", "這是一個以 Big5 編碼的臺灣網頁，用來確認字元編碼的處理。").encode("big5")
    members = [
        _warcinfo(),
        _record(
            "request",
            b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n",
            http=StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.org")], protocol="HTTP/1.1"),
        ),
        _response(
            _html("Hello", "An English paragraph about tea farming in the hills.").encode(),
            url="https://example.org/en",
        ),
        _response(big5, content_type="text/html; charset=big5", url="https://example.org/big5"),
        _response(
            _html("Sniffed", "A page served without any content type header.").encode(),
            content_type=None,
            url="https://example.org/sniff",
        ),
        _response(b"%PDF-1.4 binary", content_type="application/pdf", url="https://example.org/a.pdf"),
        _response(b"<html>moved</html>", status="301 Moved Permanently", url="https://example.org/old"),
        _response(b"\x89PNG\r\n\x1a\n....", content_type=None, url="https://example.org/img"),
        _record("metadata", b"fetchTimeMs: 12\r\n"),
    ]
    path = tmp_path / "pages.warc.gz"
    path.write_bytes(b"".join(members))
    items = list(iter_file(path))
    docs, issues = _split(items)
    assert [d.url for d in docs] == [
        "https://example.org/en",
        "https://example.org/big5",
        "https://example.org/sniff",
    ]
    assert "tea farming" in docs[0].text and "Big5 編碼的臺灣網頁" in docs[1].text
    assert "without any content type" in docs[2].text
    assert [(i.reason, i.where) for i in issues] == [
        ("non_html_payload", "record 6"),
        ("non_2xx_status", "record 7"),
        ("non_html_payload", "record 8"),
    ]
    assert "application/pdf" in issues[0].detail and "301" in issues[1].detail

    traf = [d for d in iter_file(path, html_extractor="trafilatura") if isinstance(d, RawDoc)]
    assert "tea farming" in traf[0].text and "Big5 編碼的臺灣網頁" in traf[1].text


def test_page_titles_reach_the_documents(tmp_path: Path) -> None:
    """CCNet's `title` field, a Parquet `title` column and a WARC response's HTML <title> (entities
    decoded, one line) become RawDoc.title: the spam_injection filter looks at titles."""
    page = _html("疫情影響&amp;企業站位_華體會\n官網", "一篇被複製的文章，標題裡藏著博彩品牌。").encode()
    warc = tmp_path / "pages.warc.gz"
    warc.write_bytes(
        _warcinfo() + _response(page) + _response(b"<html><body><p>no title here</p></body></html>")
    )
    docs, _ = _split(list(iter_file(warc)))
    assert [d.title for d in docs] == ["疫情影響&企業站位_華體會 官網", None]
    jsonl = tmp_path / "ccnet.jsonl"
    rows = [{"raw_content": "正文", "title": "PE管件_ope体育app"}, {"raw_content": "正文", "title": 3}]
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert [d.title for d in iter_file(jsonl)] == ["PE管件_ope体育app", None]
    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["正文"], "title": ["币游国际_官网"]}), parquet)
    assert [d.title for d in iter_file(parquet)] == ["币游国际_官网"]


def test_html_title_is_cheap_on_hostile_markup() -> None:
    import time

    from zhtw.corpus.readers import html_title

    start = time.perf_counter()
    assert html_title("<title>" * 200_000) is None  # never closed
    assert html_title("<TITLE>a<b>c</b>" + "<" * 2000 + "</title>") is not None
    assert time.perf_counter() - start < 5


# --------------------------------------------------------------------------- JSONL


def test_invalid_json_lines_are_counted_and_the_rest_is_read(tmp_path: Path) -> None:
    lines = [
        b'{"text": "first", "id": 7, "url": "https://a.example/1", "date": "2024-01-01"}',
        b'{"text": "unterminated',
        b"",
        b"[1, 2, 3]",
        b'{"title": "no text here"}',
        b'{"text": 42}',
        b'{"text": null, "raw_content": "from CCNet", "digest": "sha1:ABC", "date_download": "2021-10-01"}',
        b'{"text": ""}',
        b"   ",
        b'{"text": "last \\u81fa\\u7063"}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = list(iter_file(path))
    docs, issues = _split(items)
    assert [(i.reason, i.where) for i in issues] == [
        ("invalid_json", "line 2"),
        ("not_an_object", "line 4"),
        ("missing_text", "line 5"),
        ("text_not_string", "line 6"),
    ]
    assert all(i.source == str(path) and "\n" not in i.detail for i in issues)
    assert [d.text for d in docs] == ["first", "from CCNet", "", "last 臺灣"]
    assert (docs[0].id, docs[0].url, docs[0].date) == ("7", "https://a.example/1", "2024-01-01")
    assert (docs[1].id, docs[1].date) == ("sha1:ABC", "2021-10-01")
    assert docs[2].id == "mixed.jsonl:8"
    # 8 non-blank lines = 4 documents + 4 issues
    assert len(items) == 8


def test_text_key_and_fallbacks(tmp_path: Path) -> None:
    path = tmp_path / "k.jsonl"
    path.write_text('{"content": "A", "raw_content": "B"}\n{"raw_content": "C"}\n')
    assert [d.text for d in iter_file(path, text_key="content")] == ["A", "C"]
    issues = list(iter_file(path, text_key="content", fallback_text_keys=()))
    assert issues[0].text == "A" and issues[1].reason == "missing_text"


def test_invalid_utf8_in_each_format(tmp_path: Path) -> None:
    bad = "壞掉的".encode() + b"\xff\xfe" + "文字".encode()
    jsonl = tmp_path / "u.jsonl.gz"
    jsonl.write_bytes(gzip.compress(b'{"text": "ok 1"}\n{"text": "' + bad + b'"}\n{"text": "ok 2"}\n'))
    docs, issues = _split(list(iter_file(jsonl)))
    assert [d.text for d in docs] == ["ok 1", "ok 2"]
    assert [(i.reason, i.where, i.source) for i in issues] == [("invalid_utf8", "line 2", str(jsonl))]

    wet = tmp_path / "u.warc.wet.gz"
    members = _wet_members(["good one", "good two"])
    members.insert(2, _record("conversion", bad))
    wet.write_bytes(b"".join(members))
    docs, issues = _split(list(iter_file(wet)))
    assert [d.text for d in docs] == ["good one", "good two"]
    assert [(i.reason, i.where) for i in issues] == [("invalid_utf8", "record 3")]
    assert "urn:uuid:" in issues[0].detail  # the record id, to find it again

    txt = tmp_path / "u.txt"
    txt.write_bytes(bad)
    assert [(i.reason, i.source) for i in iter_file(txt)] == [("invalid_utf8", str(txt))]


@pytest.mark.parametrize(
    "name", ["e.jsonl", "e.jsonl.gz", "e.warc.wet.gz", "e.warc.gz", "e.parquet", "e.txt"]
)
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert [(i.reason, i.source) for i in iter_file(path)] == [("empty_file", str(path))]


def test_files_without_documents_count_as_empty(tmp_path: Path) -> None:
    blank = tmp_path / "blank.jsonl.gz"
    blank.write_bytes(gzip.compress(b"\n\n  \n"))
    info_only = tmp_path / "info.warc.wet.gz"
    info_only.write_bytes(_warcinfo())
    nothing = tmp_path / "nothing.txt.gz"
    nothing.write_bytes(gzip.compress(b""))
    for path in (blank, info_only, nothing):
        assert [i.reason for i in iter_file(path)] == ["empty_file"], path


def test_fifty_megabyte_single_line(tmp_path: Path) -> None:
    big = "長" * (50 * 1024 * 1024 // 3)  # 50 MB of UTF-8 on one line
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"text": "before"}\n')
        f.write(json.dumps({"text": big, "id": "big"}, ensure_ascii=False) + "\n")
        f.write('{"text": "after"}')  # no final newline
    assert path.stat().st_size > 50_000_000
    docs, issues = _split(list(iter_file(path)))
    assert issues == []
    assert [d.id for d in docs] == ["big.jsonl:1", "big", "big.jsonl:3"]
    assert len(docs[1].text) == len(big) and docs[2].text == "after"


def test_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    missing = tmp_path / "gone.jsonl.gz"
    for path in (folder, missing):
        issues = list(iter_file(path))
        assert [(i.reason, i.source) for i in issues] == [("unreadable_file", str(path))]


def test_gzip_is_sniffed_not_trusted_by_name(tmp_path: Path) -> None:
    plain_named_gz = tmp_path / "plain.jsonl.gz"
    plain_named_gz.write_text('{"text": "not compressed"}\n')
    gz_named_plain = tmp_path / "packed.jsonl"
    gz_named_plain.write_bytes(gzip.compress(b'{"text": "compressed"}\n'))
    assert [d.text for d in iter_file(plain_named_gz)] == ["not compressed"]
    assert [d.text for d in iter_file(gz_named_plain)] == ["compressed"]


def test_trailing_garbage_after_gzip(tmp_path: Path) -> None:
    path = tmp_path / "tail.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": "b"}\n') + b"\x00\x00" + b"junk at the end")
    docs, issues = _split(list(iter_file(path)))
    assert [d.text for d in docs] == ["a", "b"]
    assert [i.reason for i in issues] == ["corrupt_gzip"]


# --------------------------------------------------------------------------- Parquet and txt


def test_parquet_rows_stream_per_row_group(tmp_path: Path) -> None:
    n = 1000
    table = pa.table(
        {
            "text": [None if i % 100 == 5 else f"文件 {i}" for i in range(n)],
            "raw_content": [f"備援 {i}" if i % 200 == 5 else None for i in range(n)],
            "url": [f"https://p.example/{i}" for i in range(n)],
        }
    )
    path = tmp_path / "shard.parquet"
    pq.write_table(table, path, row_group_size=128)
    items = list(iter_file(path))
    docs, issues = _split(items)
    assert len(items) == n
    assert [i.where for i in issues] == [f"row {r}" for r in range(105, n, 200)]
    assert {i.reason for i in issues} == {"missing_text"}
    assert (
        docs[0].text == "文件 0" and docs[0].id == "shard.parquet:0" and docs[0].url == "https://p.example/0"
    )
    assert [d.text for d in docs if d.text.startswith("備援")] == [f"備援 {r}" for r in range(5, n, 200)]


def test_parquet_without_text_column_and_corrupt(tmp_path: Path) -> None:
    no_text = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"body": ["a", "b"]}), no_text)
    issues = list(iter_file(no_text))
    assert [(i.reason, i.where) for i in issues] == [("missing_text_column", "schema")]
    assert "2 rows" in issues[0].detail and "body" in issues[0].detail

    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not really parquet")
    assert [i.reason for i in iter_file(corrupt)] == ["corrupt_parquet"]

    # a damaged row group: the others are still read, and its rows are counted as unread
    good = tmp_path / "damaged.parquet"
    pq.write_table(
        pa.table({"text": [f"row {i} " + "x" * 50 for i in range(300)]}),
        good,
        row_group_size=100,
        compression="none",
    )
    meta = pq.ParquetFile(good).metadata
    rg = meta.row_group(1).column(0)
    start = rg.dictionary_page_offset or rg.data_page_offset
    data = bytearray(good.read_bytes())
    data[start : start + rg.total_compressed_size] = b"\xff" * rg.total_compressed_size
    good.write_bytes(bytes(data))
    docs, issues = _split(list(iter_file(good)))
    assert [d.text for d in docs] == [f"row {i} " + "x" * 50 for i in [*range(100), *range(200, 300)]]
    assert [(i.reason, i.where) for i in issues] == [("corrupt_parquet", "row group 1 (row 100)")]
    assert "100 rows unread" in issues[0].detail


def test_txt_file_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "note.txt.gz"
    path.write_bytes(gzip.compress("\ufeff第一行\n第二行\n".encode()))
    docs = list(iter_file(path))
    assert len(docs) == 1 and docs[0].text == "第一行\n第二行\n" and docs[0].id == "note.txt.gz"


# --------------------------------------------------------------------------- text I/O for later stages


def test_iter_texts_reads_a_corpus_output_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    (out / "stats.json").write_text('{"text": "stats are not data"}')
    (out / "logs" / "run.log").write_text("log line")
    (out / "_work").mkdir()
    (out / "_work" / "00000.jsonl.gz").write_bytes(gzip.compress(b'{"text": "intermediate"}\n'))
    rows = [
        json.dumps({"text": f"甲 {i}", "id": i, "script": "traditional"}, ensure_ascii=False)
        for i in range(3)
    ]
    (out / "00000.jsonl.gz").write_bytes(
        gzip.compress(("\n".join(rows) + '\n{"text": ""}\nnot json\n').encode())
    )
    pq.write_table(pa.table({"text": ["乙 0", "乙 1"], "id": ["p0", "p1"]}), out / "00001.parquet")
    stats = TextStats()
    texts = list(iter_texts([out], stats=stats))
    assert texts == ["甲 0", "甲 1", "甲 2", "乙 0", "乙 1"]
    assert (stats.files, stats.documents, stats.empty, stats.unreadable) == (2, 5, 1, 1)
    assert stats.issues == {"invalid_json": 1} and stats.characters == sum(len(t) for t in texts)
    assert any(
        "invalid_json" in r.getMessage() and "00000.jsonl.gz" in r.getMessage() for r in caplog.records
    )
    # a single path string works too, and bad paths fail at the call
    assert list(iter_texts(str(out / "*.parquet"))) == ["乙 0", "乙 1"]
    with pytest.raises(InputError):
        iter_texts([out / "missing"])


def test_corpus_readers_import_without_torch() -> None:
    code = (
        "import sys, zhtw.corpus.readers, zhtw.corpus.textio; "
        "sys.exit(1 if 'torch' in sys.modules or 'trafilatura' in sys.modules else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_real_common_crawl_wet_and_warc(shared_data: Path) -> None:
    web = shared_data / "web"
    (doc,) = list(iter_file(web / "whirlwind.warc.wet.gz"))
    assert doc.url == "https://an.wikipedia.org/wiki/Escopete" and "Escopete" in doc.text
    assert doc.id == "urn:uuid:ba729a40-ff84-4085-8d48-0a5b2ee0c42d" and doc.date == "2024-05-18T01:58:10Z"
    (page,) = list(iter_file(web / "whirlwind.warc.gz"))  # warcinfo, request, response, metadata
    assert page.url == doc.url and "Escopete" in page.text


@pytest.mark.shared_data
def test_real_wget_warc_of_english_pages(shared_data: Path) -> None:
    docs, issues = _split(list(iter_file(shared_data / "web" / "dolma_sample-0000.warc.gz")))
    assert issues == [] and len(docs) == 22
    assert all(d.url.startswith("https://") for d in docs)
    assert sum(len(d.text) > 1000 for d in docs) >= 18
    assert "Semantic Scholar" in docs[0].text


@pytest.mark.shared_data
def test_real_ccnet_jsonl(shared_data: Path) -> None:
    path = shared_data / "web" / "chinesewebtext_cc_2021-43.jsonl.gz"
    docs, issues = _split(list(iter_file(path)))
    assert issues == [] and len(docs) == 100
    assert all(
        d.url and d.url.startswith("http") and d.text and d.id.startswith("sha1:") and d.date for d in docs
    )
    assert docs[0].text.startswith("铜鼓县")


# --------------------------------------------------------------------------- bundled sample


def _load_make_sample():
    spec = importlib.util.spec_from_file_location(
        "make_sample", REPO / "corpus" / "sample" / "make_sample.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_sample"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bundled_sample_parses_with_expected_records() -> None:
    make_sample = _load_make_sample()
    docs, issues = _split(list(iter_file(SAMPLE)))
    assert issues == []
    assert len(docs) == sum(make_sample.CATEGORY_COUNTS.values())
    assert len({d.id for d in docs}) == len(docs) and len({d.url for d in docs}) == len(docs)
    assert all(d.url.startswith("https://") and d.date.startswith("2024-") for d in docs)
    assert SAMPLE.stat().st_size < 1_500_000
    assert any("對象" in d.text for d in docs)


def test_bundled_sample_is_reproducible(tmp_path: Path) -> None:
    make_sample = _load_make_sample()
    first, second = tmp_path / "a.warc.wet.gz", tmp_path / "b.warc.wet.gz"
    make_sample.write_sample(first)
    make_sample.write_sample(second)
    assert first.read_bytes() == second.read_bytes()
    # same records as the committed file (compare content: compressed bytes may differ across zlib builds)
    assert gzip.decompress(first.read_bytes()) == gzip.decompress(SAMPLE.read_bytes())
