"""Input layer of the corpus stage: find input files and stream their documents.

`iter_file` turns one file into a stream of `RawDoc` (a document) and `ReadIssue` (something that
could not be read), under one accounting rule: every document-shaped unit of a file -- a WET
``conversion`` record, a WARC ``response`` record, a JSONL line, a Parquet row, a ``.txt`` file as
a whole -- yields exactly one `RawDoc` or exactly one `ReadIssue`, and every file-level problem
yields one `ReadIssue`. Records that are not documents (warcinfo, request, metadata, resource,
revisit) and blank JSONL lines yield nothing. Bad input never raises and is never dropped
silently; the pipeline counts each issue by reason and file.

Issue reasons (``ReadIssue.reason``):

=====================  ===================================================================
unreadable_file        the file cannot be opened or read (permissions, a directory, I/O error)
empty_file             no bytes, or nothing but blank lines / no rows / no document records
truncated_gzip         the gzip stream ends early; every document before the break is kept
corrupt_gzip           invalid gzip data (bad header, CRC, deflate error, trailing garbage)
corrupt_warc_record    a WARC record warcio cannot parse; reading resumes at the next record
truncated_record       an uncompressed WARC file ends inside a record
invalid_utf8           a JSONL line, WET record or text file that is not valid UTF-8
invalid_json           a JSONL line that is not valid JSON
not_an_object          a JSONL line that is valid JSON but not an object
missing_text           no value under the text key or any fallback key
text_not_string        the text value is not a string (a number, list, bytes ...)
missing_text_column    a Parquet file has none of the text columns (one issue per file)
corrupt_parquet        an unreadable Parquet file or row group (the other row groups are read)
non_html_payload       a WARC response whose payload is not HTML (PDF, image, dns ...)
non_2xx_status         a WARC response with an HTTP status other than 2xx (redirect, 404 ...)
html_extraction_failed the HTML extractor raised on a WARC response
=====================  ===================================================================

Gzip is decompressed here rather than by warcio or the `gzip` module: warcio hides truncation
and deflate errors (it prints them and stops), and knowing where each gzip member starts is what
lets a reader skip a corrupt WARC record and carry on with the next one.
"""

from __future__ import annotations

import glob
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

try:
    import orjson

    _JSONError: type[Exception] = orjson.JSONDecodeError

    def _loads(line: bytes) -> Any:
        return orjson.loads(line)
except ImportError:  # orjson is a declared dependency; the stdlib keeps a broken env working, slower
    import json

    _JSONError = ValueError

    def _loads(line: bytes) -> Any:
        return json.loads(line.decode("utf-8"))


__all__ = [
    "FORMATS",
    "InputError",
    "RawDoc",
    "ReadIssue",
    "SUPPORTED_EXTENSIONS",
    "detect_format",
    "expand_inputs",
    "iter_file",
]

# Name suffix -> format, longest first so ".warc.wet.gz" is WET, not WARC.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".warc.wet.gz": "wet",
    ".wet.gz": "wet",
    ".wet": "wet",
    ".warc.gz": "warc",
    ".warc": "warc",
    ".jsonl.gz": "jsonl",
    ".jsonl": "jsonl",
    ".json.gz": "jsonl",
    ".ndjson.gz": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".txt.gz": "txt",
    ".txt": "txt",
}
FORMATS = ("wet", "warc", "jsonl", "parquet", "txt")
HTML_EXTRACTORS = ("resiliparse", "trafilatura")

_ACCEPTED = (
    "files ending in " + ", ".join(SUPPORTED_EXTENSIONS) + "; directories (searched recursively for such "
    "files, skipping names that start with '.' or '_'); or glob patterns such as 'data/**/*.jsonl.gz'"
)
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # raw bytes read at a time
_MAX_OUT = 1 << 22  # decompressed bytes produced per zlib call (bounds memory on gzip bombs)
_WARC_HOLD = 1 << 26  # a WARC gzip member up to this size is CRC-checked before warcio sees it
_HTML_TYPES = ("text/html", "application/xhtml+xml")


class InputError(ValueError):
    """An input path that cannot be used: missing, matching nothing, or of an unsupported type."""


@dataclass(slots=True)
class RawDoc:
    """One document as read from its file, before any cleaning."""

    text: str
    id: str
    url: str | None
    source: str
    date: str | None = None


@dataclass(slots=True)
class ReadIssue:
    """One unit (or a whole file) that could not be read, with a reason the stats can count."""

    source: str
    reason: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.reason}: {self.detail}"


# --------------------------------------------------------------------------- finding inputs


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the input format of `path` by its name: wet, warc, jsonl, parquet or txt."""
    name = os.path.basename(os.fspath(path)).lower()
    for suffix, fmt in SUPPORTED_EXTENSIONS.items():
        if name.endswith(suffix):
            return fmt
    raise InputError(
        f"{os.fspath(path)}: unsupported file type; supported extensions: " + ", ".join(SUPPORTED_EXTENSIONS)
    )


def _is_supported(name: str) -> bool:
    return name.lower().endswith(tuple(SUPPORTED_EXTENSIONS))


def _walk(top: str) -> list[str]:
    """Supported files under `top`, recursively; names starting with '.' or '_' are skipped."""
    found = []
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        found.extend(
            os.path.join(root, f) for f in files if not f.startswith((".", "_")) and _is_supported(f)
        )
    return found


def expand_inputs(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str]:
    """Turn files, directories and glob patterns into sorted, de-duplicated absolute file paths.

    A named file must have a supported extension; directories and patterns contribute only
    supported files. Anything that does not exist or contributes no file raises `InputError`.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: set[str] = set()
    for item in inputs:
        given = os.fspath(item)
        path = os.path.expanduser(given)
        if os.path.isdir(path):
            found = _walk(path)
            if not found:
                raise InputError(f"{given}: directory holds no supported input files. Accepted: {_ACCEPTED}")
        elif os.path.exists(path):
            detect_format(path)
            found = [path]
        elif glob.has_magic(path):
            found = []
            for match in glob.glob(path, recursive=True):
                if os.path.isdir(match):
                    found.extend(_walk(match))
                elif _is_supported(os.path.basename(match)):
                    found.append(match)
            if not found:
                raise InputError(f"{given}: pattern matches no supported input files. Accepted: {_ACCEPTED}")
        else:
            raise InputError(f"{given}: no such file or directory. Accepted: {_ACCEPTED}")
        out.update(os.path.abspath(f) for f in found)
    return sorted(out)


# --------------------------------------------------------------------------- reading one file


def iter_file(
    path: str | os.PathLike[str],
    *,
    text_key: str = "text",
    fallback_text_keys: Iterable[str] = ("raw_content",),
    html_extractor: str = "resiliparse",
    fmt: str | None = None,
) -> Iterator[RawDoc | ReadIssue]:
    """Stream the documents of one file, one `RawDoc` or `ReadIssue` per unit (see module doc).

    `fmt` overrides the format detected from the name. Raises only for an unsupported name
    (`InputError`), an unknown `html_extractor` (`ValueError`) or a missing trafilatura
    (`ImportError`); everything wrong with the file's content comes back as a `ReadIssue`.
    """
    source = os.fspath(path)
    fmt = fmt or detect_format(source)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    keys = tuple(dict.fromkeys((text_key, *fallback_text_keys)))
    if fmt in ("wet", "warc"):
        reader: Callable[[str, IO[bytes]], Iterator[RawDoc | ReadIssue]] = _warc_reader(
            _html_extractor(html_extractor)
        )
    elif fmt == "jsonl":

        def reader(src: str, fh: IO[bytes]) -> Iterator[RawDoc | ReadIssue]:
            return _iter_jsonl(src, fh, keys)
    elif fmt == "parquet":

        def reader(src: str, fh: IO[bytes]) -> Iterator[RawDoc | ReadIssue]:
            return _iter_parquet(src, fh, keys)
    else:
        reader = _iter_txt
    return _guarded(source, reader)


def _guarded(
    source: str, reader: Callable[[str, IO[bytes]], Iterator[RawDoc | ReadIssue]]
) -> Iterator[RawDoc | ReadIssue]:
    """Open the file, report unreadable and empty files, and turn I/O errors into issues."""
    try:
        fh = open(source, "rb")  # noqa: SIM115 -- closed below, the generator may be abandoned
    except OSError as e:
        yield ReadIssue(source, "unreadable_file", "file", _oneline(f"{type(e).__name__}: {e.strerror or e}"))
        return
    produced = 0
    try:
        if os.fstat(fh.fileno()).st_size == 0:
            yield ReadIssue(source, "empty_file", "file", "the file has 0 bytes")
            return
        for item in reader(source, fh):
            produced += 1
            yield item
        if produced == 0:
            yield ReadIssue(source, "empty_file", "file", "the file holds no documents")
    except OSError as e:
        yield ReadIssue(
            source,
            "unreadable_file",
            f"after {produced} units",
            _oneline(f"{type(e).__name__}: {e.strerror or e}"),
        )
    finally:
        fh.close()


def _oneline(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- gzip


class _GzipError(Exception):
    """Raised by `_Gunzip` in place of the silent truncation/corruption of other readers."""

    def __init__(self, reason: str, member_offset: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.member_offset = member_offset
        self.detail = detail


class _Gunzip:
    """Read-only stream of the decompressed bytes of a (multi-member) gzip file.

    Raises `_GzipError` on truncation or corrupt data instead of returning short data, and
    remembers at which raw offset recent members start so a reader can skip a broken one.
    """

    def __init__(self, fh: IO[bytes], start: int = 0, hold: int = 0) -> None:
        self.fh = fh
        self.hold = hold
        self.failed: _GzipError | None = None
        fh.seek(start)
        self.inp = b""  # raw bytes not yet consumed by the decompressor
        self.inp_off = start  # raw offset of inp[0]
        self.d: Any = None  # zlib decompressor of the current member
        self.member_off = start
        self.members: deque[tuple[int, int]] = deque(maxlen=1024)  # (decompressed start, raw start)
        self.buf = b""
        self.bufpos = 0
        self.produced = 0  # decompressed bytes produced so far
        self.pos = 0  # decompressed bytes returned so far

    def tell(self) -> int:
        return self.pos

    def member_at(self, offset: int) -> int:
        """Raw offset of the gzip member holding decompressed byte `offset`."""
        for dstart, rstart in reversed(self.members):
            if dstart <= offset:
                return rstart
        return self.members[0][1] if self.members else self.member_off

    def _more_input(self) -> bool:
        data = self.fh.read(_CHUNK)
        if data:
            self.inp += data
        return bool(data)

    def _fill(self) -> bool:
        """Decompress the next piece into `buf`; False at the clean end of the file.

        With `hold`, a member's bytes are released only once the member is complete (its CRC
        checked) or `hold` bytes are pending, so a corrupt WARC record never reaches the parser.
        Data before a truncation point is released first; the error comes on the next call.
        """
        if self.failed is not None:
            raise self.failed
        pending: list[bytes] = []
        size = 0
        while True:
            if self.d is None or self.d.eof:
                if pending:
                    break
                # between members: skip NUL padding, then expect the gzip magic
                while True:
                    stripped = self.inp.lstrip(b"\x00")
                    self.inp_off += len(self.inp) - len(stripped)
                    self.inp = stripped
                    if len(self.inp) >= 2 or not self._more_input():
                        break
                if not self.inp:
                    return False
                if not self.inp.startswith(_GZIP_MAGIC):
                    raise _GzipError(
                        "corrupt_gzip",
                        self.inp_off,
                        f"byte {self.inp_off}: data after the last gzip member is not gzip",
                    )
                self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self.member_off = self.inp_off
                self.members.append((self.produced, self.inp_off))
            if not self.inp and not self._more_input():
                self.failed = _GzipError(
                    "truncated_gzip",
                    self.member_off,
                    f"the file ends inside the gzip member starting at byte {self.member_off}",
                )
                if pending:
                    break
                raise self.failed
            try:
                out = self.d.decompress(self.inp, _MAX_OUT)
            except zlib.error as e:
                self.failed = _GzipError(
                    "corrupt_gzip", self.member_off, f"gzip member at byte {self.member_off}: {e}"
                )
                raise self.failed from None
            rest = self.d.unused_data if self.d.eof else self.d.unconsumed_tail
            self.inp_off += len(self.inp) - len(rest)
            self.inp = rest
            if out:
                pending.append(out)
                size += len(out)
                self.produced += len(out)
                if size >= self.hold:
                    break
        self.buf, self.bufpos = (pending[0] if len(pending) == 1 else b"".join(pending)), 0
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if self.bufpos >= len(self.buf) and not self._fill():
            return b""
        out = self.buf[self.bufpos : self.bufpos + size]
        self.bufpos += len(out)
        self.pos += len(out)
        return out


def _open_stream(fh: IO[bytes], start: int = 0, hold: int = 0) -> IO[bytes] | _Gunzip:
    """The file's content: decompressed when it starts with the gzip magic, whatever its name."""
    fh.seek(0)
    gz = fh.read(2) == _GZIP_MAGIC
    if gz:
        return _Gunzip(fh, start, hold)
    fh.seek(start)
    return fh


def _gzip_issue(source: str, e: _GzipError, where: str) -> ReadIssue:
    return ReadIssue(source, e.reason, where, _oneline(e.detail))


# --------------------------------------------------------------------------- JSONL


def _iter_lines(stream: IO[bytes] | _Gunzip) -> Iterator[bytes]:
    """Yield lines (without the newline) of any length, reading bounded chunks."""
    parts: list[bytes] = []
    while chunk := stream.read(_CHUNK):
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            if parts:
                parts.append(chunk[start:nl])
                line = b"".join(parts)
                parts = []
            else:
                line = chunk[start:nl]
            yield line
            start = nl + 1
        if start < len(chunk):
            parts.append(chunk[start:])
    if parts:
        yield b"".join(parts)


def _pick_text(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, str, str]:
    """(text, "", "") or (None, reason, detail) following the text-key fallback order."""
    for key in keys:
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            return value, "", ""
        return None, "text_not_string", f"field {key!r} holds {type(value).__name__}, not a string"
    return None, "missing_text", "no text in field(s) " + ", ".join(repr(k) for k in keys)


def _opt_str(*values: Any) -> str | None:
    for value in values:
        if value is not None and value != "":
            return value if isinstance(value, str) else str(value)
    return None


def _record_doc(
    source: str, obj: dict[str, Any], keys: tuple[str, ...], fallback_id: str, where: str
) -> RawDoc | ReadIssue:
    text, reason, detail = _pick_text(obj, keys)
    if text is None:
        return ReadIssue(source, reason, where, detail)
    url = obj.get("url")
    return RawDoc(
        text=text,
        id=_opt_str(obj.get("id"), obj.get("digest")) or fallback_id,
        url=url if isinstance(url, str) and url else None,
        source=source,
        date=_opt_str(obj.get("date"), obj.get("date_download")),
    )


def _iter_jsonl(source: str, fh: IO[bytes], keys: tuple[str, ...]) -> Iterator[RawDoc | ReadIssue]:
    base = os.path.basename(source)
    line_no = 0
    try:
        for line in _iter_lines(_open_stream(fh)):
            line_no += 1
            if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            where = f"line {line_no}"
            try:
                obj = _loads(line)
            except _JSONError as e:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as u:
                    yield ReadIssue(
                        source, "invalid_utf8", where, f"invalid UTF-8 at byte {u.start} of the line"
                    )
                else:
                    yield ReadIssue(source, "invalid_json", where, _oneline(str(e)))
                continue
            if not isinstance(obj, dict):
                yield ReadIssue(source, "not_an_object", where, f"the line holds a JSON {type(obj).__name__}")
                continue
            yield _record_doc(source, obj, keys, f"{base}:{line_no}", where)
    except _GzipError as e:
        yield _gzip_issue(source, e, f"line {line_no + 1}")


# --------------------------------------------------------------------------- Parquet


def _iter_parquet(source: str, fh: IO[bytes], keys: tuple[str, ...]) -> Iterator[RawDoc | ReadIssue]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = os.path.basename(source)
    errors = (pa.ArrowException, OSError, ValueError)
    try:
        pf = pq.ParquetFile(fh)
        names = set(pf.schema_arrow.names)
        n_groups = pf.num_row_groups
    except errors as e:
        yield ReadIssue(source, "corrupt_parquet", "file", _oneline(f"{type(e).__name__}: {e}"))
        return
    text_cols = [k for k in keys if k in names]
    if not text_cols:
        yield ReadIssue(
            source,
            "missing_text_column",
            "schema",
            _oneline(
                f"none of the columns {', '.join(keys)} exists ({pf.metadata.num_rows} rows "
                f"unread); columns: {', '.join(sorted(names))}"
            ),
        )
        return
    columns = text_cols + [c for c in ("id", "digest", "url", "date", "date_download") if c in names]
    row = 0
    for group in range(n_groups):
        group_rows = pf.metadata.row_group(group).num_rows
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=256, row_groups=[group], columns=columns):
                data = {name: batch.column(name).to_pylist() for name in batch.schema.names}
                for i in range(batch.num_rows):
                    obj = {name: values[i] for name, values in data.items()}
                    yield _record_doc(source, obj, keys, f"{base}:{row}", f"row {row}")
                    row += 1
                    done += 1
        except errors as e:
            yield ReadIssue(
                source,
                "corrupt_parquet",
                f"row group {group} (row {row})",
                _oneline(f"{group_rows - done} rows unread: {type(e).__name__}: {e}"),
            )
            row += group_rows - done


# --------------------------------------------------------------------------- plain text


def _iter_txt(source: str, fh: IO[bytes]) -> Iterator[RawDoc | ReadIssue]:
    try:
        data = _open_stream(fh).read()
    except _GzipError as e:
        yield _gzip_issue(source, e, "file")
        return
    if not data:
        return  # reported as empty_file
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield ReadIssue(source, "invalid_utf8", f"byte {e.start}", "the file is not valid UTF-8")
        return
    yield RawDoc(text=text, id=os.path.basename(source), url=None, source=source)


# --------------------------------------------------------------------------- WARC / WET


def _html_extractor(name: str) -> Callable[[str, str | None], str]:
    """A function (html, url) -> main text, for the extractor named `name`."""
    if name == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        def extract(html: str, url: str | None) -> str:
            return extract_plain_text(HTMLTree.parse(html), main_content=True, alt_texts=False)

        return extract
    if name == "trafilatura":
        try:
            import trafilatura
        except ImportError:
            raise ImportError(
                "html_extractor='trafilatura' needs trafilatura, which is not installed: "
                "pip install 'trafilatura>=2.0'"
            ) from None

        def extract(html: str, url: str | None) -> str:
            return trafilatura.extract(html, url=url, include_comments=False, deduplicate=False) or ""

        return extract
    raise ValueError(f"unknown html_extractor {name!r}; expected one of {', '.join(HTML_EXTRACTORS)}")


def _decode_html(payload: bytes, content_type: str | None) -> str:
    """Decode HTML bytes with the declared charset, else the detected one."""
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    charset = None
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    try:
        return bytes_to_str(payload, charset or detect_encoding(payload))
    except LookupError:  # an unknown charset label
        return bytes_to_str(payload, detect_encoding(payload))


def _looks_like_html(payload: bytes) -> bool:
    head = payload[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html")) or any(
        t in head for t in (b"<html", b"<head", b"<body")
    )


def _find_resync(fh: IO[bytes], start: int, gz: bool) -> int | None:
    """Raw offset of the next possible record start at or after `start`, or None."""
    pattern = b"\x1f\x8b\x08" if gz else b"\nWARC/1."
    skip = 0 if gz else 1
    fh.seek(start)
    offset, carry = start, b""
    while chunk := fh.read(_CHUNK):
        data = carry + chunk
        hit = data.find(pattern)
        if hit >= 0:
            return offset - len(carry) + hit + skip
        carry = data[-(len(pattern) - 1) :]
        offset += len(chunk)
    return None


def _payload_cut_short(record: Any) -> bool:
    """True when the file ended before the record's declared Content-Length."""
    raw = record.raw_stream
    while raw.read(_CHUNK):
        pass
    return getattr(raw, "limit", 0) > 0


def _record_id(record: Any, fallback: str) -> str:
    rid = record.rec_headers.get_header("WARC-Record-ID")
    return rid.strip().strip("<>") if rid else fallback


def _warc_item(
    source: str, record: Any, where: str, fallback_id: str, extract: Callable[[str, str | None], str]
) -> RawDoc | ReadIssue | None:
    """Turn one parsed WARC record into a document, an issue, or None for non-document records."""
    rtype = record.rec_type
    if rtype not in ("conversion", "response"):
        return None
    rid = _record_id(record, fallback_id)
    length = (record.rec_headers.get_header("Content-Length") or "").strip()
    if not length.isdigit():
        return ReadIssue(
            source, "corrupt_warc_record", where, _oneline(f"{rid}: invalid Content-Length {length!r}")
        )
    url = record.rec_headers.get_header("WARC-Target-URI") or None
    date = record.rec_headers.get_header("WARC-Date") or None
    if rtype == "conversion":
        data = record.content_stream().read()
        if _payload_cut_short(record):
            return ReadIssue(source, "truncated_record", where, f"{rid}: the file ends inside the record")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            return ReadIssue(
                source, "invalid_utf8", where, f"{rid}: invalid UTF-8 at byte {e.start} of the payload"
            )
        return RawDoc(text=text, id=rid, url=url, source=source, date=date)

    http = record.http_headers
    if http is None:
        ctype = record.rec_headers.get_header("Content-Type") or "unknown"
        return ReadIssue(source, "non_html_payload", where, f"{rid}: no HTTP headers (record type {ctype})")
    status = http.get_statuscode() or ""
    if not status.startswith("2"):
        return ReadIssue(source, "non_2xx_status", where, f"{rid}: HTTP status {status or 'missing'}")
    ctype = http.get_header("Content-Type") or record.rec_headers.get_header("WARC-Identified-Payload-Type")
    mime = ctype.split(";")[0].strip().lower() if ctype else ""
    if mime and mime not in _HTML_TYPES:
        return ReadIssue(source, "non_html_payload", where, _oneline(f"{rid}: content type {mime}"))
    payload = record.content_stream().read()
    if _payload_cut_short(record):
        return ReadIssue(source, "truncated_record", where, f"{rid}: the file ends inside the record")
    if not mime and not _looks_like_html(payload):
        return ReadIssue(
            source, "non_html_payload", where, f"{rid}: no content type and the payload is not HTML"
        )
    try:
        text = extract(_decode_html(payload, ctype), url)
    except Exception as e:  # extractors raise many kinds of errors on hostile HTML
        return ReadIssue(source, "html_extraction_failed", where, _oneline(f"{rid}: {type(e).__name__}: {e}"))
    return RawDoc(text=text, id=rid, url=url, source=source, date=date)


def _warc_reader(
    extract: Callable[[str, str | None], str],
) -> Callable[[str, IO[bytes]], Iterator[RawDoc | ReadIssue]]:
    def reader(source: str, fh: IO[bytes]) -> Iterator[RawDoc | ReadIssue]:
        return _iter_warc(source, fh, extract)

    return reader


def _record_start(stream: IO[bytes] | _Gunzip, records: Any) -> int:
    """Raw offset of the record warcio is on (warcio counts decompressed bytes)."""
    return stream.member_at(records.offset) if isinstance(stream, _Gunzip) else records.offset


def _iter_warc(
    source: str, fh: IO[bytes], extract: Callable[[str, str | None], str]
) -> Iterator[RawDoc | ReadIssue]:
    """Read WARC/WET records with warcio; after a corrupt record, resume at the next record start.

    One issue is reported per corrupt stretch: a restart that fails before parsing any record
    (say, at a false gzip magic inside compressed data) belongs to the stretch already reported.
    """
    from warcio.archiveiterator import ArchiveIterator

    base = os.path.basename(source)
    fh.seek(0)
    gz = fh.read(2) == _GZIP_MAGIC
    record_no = 0
    start = 0
    in_bad_stretch = False
    while True:
        stream = _open_stream(fh, start, hold=_WARC_HOLD)
        records = ArchiveIterator(stream)

        failed: tuple[str, int, str] | None = None
        try:
            while failed is None:
                try:
                    record = next(records)
                except StopIteration:
                    return
                except _GzipError:
                    raise
                except Exception as e:  # warcio raises ArchiveLoadFailed, ValueError, ... on bad records
                    at = _record_start(stream, records)
                    failed = ("corrupt_warc_record", at, _oneline(f"byte {at}: {type(e).__name__}: {e}"))
                    break
                record_no += 1
                in_bad_stretch = False
                item = _warc_item(source, record, f"record {record_no}", f"{base}:{record_no}", extract)
                if item is None:
                    continue
                yield item
                if isinstance(item, ReadIssue) and item.reason == "truncated_record":
                    return
                if isinstance(item, ReadIssue) and item.reason == "corrupt_warc_record":
                    # its length cannot be trusted: do not let warcio read on from here
                    in_bad_stretch = True
                    failed = (item.reason, _record_start(stream, records), item.detail)
        except _GzipError as e:
            if e.reason == "truncated_gzip":
                yield _gzip_issue(source, e, f"record {record_no + 1}")
                return
            failed = (e.reason, e.member_offset, e.detail)
        reason, at, detail = failed
        if not in_bad_stretch:
            record_no += 1
            in_bad_stretch = True
            yield ReadIssue(source, reason, f"record {record_no}", detail)
        resume = _find_resync(fh, at + 1, gz)
        if resume is None:
            return
        start = resume
