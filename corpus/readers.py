"""Input layer of the corpus stage: find input files and stream their documents.

`iter_file` turns one file into a stream of `RawDoc` (a document) and `ReadIssue` (something that
could not be read), under one accounting rule: every document-shaped unit of a file -- a WET
``conversion`` record, a WARC ``response`` record, a JSONL line, a Parquet row, a ``.txt`` file as
a whole -- yields exactly one `RawDoc` or exactly one `ReadIssue`, and every file-level problem
yields one `ReadIssue`. Records that are not documents (warcinfo, request, metadata, resource,
revisit) and blank JSONL lines yield nothing. Bad input never raises, never blocks and is never
dropped silently; the pipeline counts each issue by reason and file.

`scan_inputs` finds the files; what it cannot use (a FIFO, a broken link, a directory loop) comes
back as `ReadIssue`s beside the files, so callers count those too.

Issue reasons (``ReadIssue.reason``):

=======================  =================================================================
unreadable_file          the file cannot be opened or read (permissions, a directory, I/O error)
not_regular_file         a FIFO, socket or device with a supported name; skipped unopened
broken_link              a symbolic link whose target does not exist
symlink_loop             a directory link that leads back into a directory already searched
unreadable_dir           a directory that cannot be listed
empty_file               no bytes, or nothing but blank lines / no rows / no document records
unsupported_compression  bzip2, xz, zip, 7z or lz4 data (whatever the name says): one per file
utf16_text               UTF-16 (or UTF-32) text: one issue per file, convert it to UTF-8
truncated_gzip           the gzip stream ends early; every document before the break is kept
corrupt_gzip             invalid gzip data (bad header, CRC, deflate error, trailing garbage)
truncated_zstd           the zstandard (``.zst``) stream ends early; every document before it is kept
corrupt_zstd             invalid zstandard data (bad frame header or checksum, trailing garbage)
too_large                a unit (JSONL line, WARC record, text file) larger than
                         ``max_unit_bytes`` once decompressed; skipped without holding it whole
corrupt_warc_record      a WARC record that cannot be parsed; reading resumes at the next record
bad_content_length       a WARC record whose Content-Length disagrees with the data; reading
                         resumes at the next ``WARC/1.`` record, which is read normally
truncated_record         a WARC file ends inside a record
invalid_utf8             a JSONL line, WET record or text file that is not valid UTF-8
invalid_json             a JSONL line that is not valid JSON
not_an_object            a JSONL line that is valid JSON but not an object
missing_text             no value under the text key or any fallback key
text_not_string          the text value is not a string (a number, list, bytes ...)
missing_text_column      a Parquet file has none of the text columns (one issue per file)
corrupt_parquet          an unreadable Parquet file or row group (the other row groups are read)
non_html_payload         a WARC response whose payload is not HTML (PDF, image, dns ...)
non_2xx_status           a WARC response with an HTTP status other than 2xx (redirect, 404 ...)
html_too_deep            HTML nested deeper than `MAX_HTML_DEPTH` elements (main-text extraction
                         is quadratic in depth: a few KB of nested tags would stall a worker)
html_extraction_failed   the HTML extractor raised on a WARC response
=======================  =================================================================

Compressed data is recognised by its magic bytes, not its name, and decompressed here rather than
by warcio or the `gzip` module: those hide truncation and deflate errors, and decompressing in
bounded steps is what caps a decompression bomb. WARC records are framed here too (header block,
then exactly Content-Length bytes, then a blank line), so a wrong length costs one record, never
the records after it, and no header bytes of the next record can reach a document's text.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import html as htmllib
import io
import logging
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import show_path

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
    "DEFAULT_MAX_UNIT_BYTES",
    "FORMATS",
    "InputError",
    "InputScan",
    "MAX_HTML_DEPTH",
    "RawDoc",
    "ReadIssue",
    "SUPPORTED_EXTENSIONS",
    "detect_format",
    "expand_inputs",
    "html_title",
    "iter_file",
    "scan_inputs",
]

log = logging.getLogger(__name__)

# Name suffix -> format, longest first so ".warc.wet.gz" is WET, not WARC.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".warc.wet.gz": "wet",
    ".wet.gz": "wet",
    ".wet": "wet",
    ".warc.gz": "warc",
    ".warc": "warc",
    ".jsonl.gz": "jsonl",
    ".jsonl.zst": "jsonl",
    ".jsonl": "jsonl",
    ".json.gz": "jsonl",
    ".ndjson.gz": "jsonl",
    ".ndjson.zst": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".txt.gz": "txt",
    ".txt.zst": "txt",
    ".txt": "txt",
}
FORMATS = ("wet", "warc", "jsonl", "parquet", "txt")
HTML_EXTRACTORS = ("resiliparse", "trafilatura")
DEFAULT_MAX_UNIT_BYTES = 1 << 28  # 256 MiB: one JSONL line / WARC record / text file, decompressed
MAX_HTML_DEPTH = 1000  # resiliparse's main-content pass takes 0.02 s at this depth, 9 s at 20,000

_ACCEPTED = (
    "files ending in " + ", ".join(SUPPORTED_EXTENSIONS) + "; directories (searched recursively for such "
    "files, skipping names that start with '.' or '_'); or glob patterns such as 'data/**/*.jsonl.gz'"
)
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20  # raw bytes read at a time
_MAX_OUT = 1 << 22  # decompressed bytes produced per zlib call (bounds memory on gzip bombs)
_ZSTD_PIECE = 1 << 9  # compressed bytes per zstd call: at most ~22 MiB out, whatever the ratio
_WARC_HOLD = 1 << 26  # a WARC gzip member up to this size is CRC-checked before the framer sees it
_MAX_WARC_HEADER = 1 << 16
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_MAX_TITLE_CHARS = 1000  # a longer "title" is cut (it is metadata for filters, not text)
_TITLE_SCAN = 1 << 18  # characters of HTML searched for <title>


class InputError(ZhtwError, ValueError):
    """An input path that cannot be used: missing, matching nothing, or of an unsupported type."""


@dataclass(slots=True)
class RawDoc:
    """One document as read from its file, before any cleaning."""

    text: str
    id: str
    url: str | None
    source: str
    date: str | None = None
    title: str | None = None  # the page title (CCNet ``title``, HTML ``<title>``): spam filters look at it


@dataclass(slots=True)
class ReadIssue:
    """One unit (or a whole file) that could not be read, with a reason the stats can count.

    `source` is the file's printable name (`show_path`): safe to log and to write as JSON even
    when the real name is not valid UTF-8.
    """

    source: str
    reason: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{show_path(self.source)}: {self.where}: {self.reason}: {self.detail}"


@dataclass
class InputScan:
    """What `scan_inputs` found: regular files to read, and entries it skipped (each with a reason)."""

    files: list[str] = field(default_factory=list)
    skipped: list[ReadIssue] = field(default_factory=list)


# --------------------------------------------------------------------------- finding inputs


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the input format of `path` by its name: wet, warc, jsonl, parquet or txt."""
    name = os.path.basename(os.fspath(path)).lower()
    for suffix, fmt in SUPPORTED_EXTENSIONS.items():
        if name.endswith(suffix):
            return fmt
    raise InputError(
        f"{show_path(path)}: unsupported file type; supported extensions: " + ", ".join(SUPPORTED_EXTENSIONS)
    )


def _is_supported(name: str) -> bool:
    return name.lower().endswith(tuple(SUPPORTED_EXTENSIONS))


def _check_name(path: str) -> None:
    """Refuse a path that is not valid UTF-8: later stages record names in JSON and logs."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"{show_path(path)}: the file name is not valid UTF-8; rename it (for example "
            "`convmv -f big5 -t utf-8 --notest NAME`) or move it out of the input"
        ) from None


def _skip(path: str, reason: str, detail: str) -> ReadIssue:
    return ReadIssue(show_path(path), reason, "file", detail)


def _classify(path: str) -> str | ReadIssue:
    """`path` itself when it is a regular file to read, else the issue that skips it (never opened)."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return _skip(path, "symlink_loop", "the symbolic link leads to itself")
        if os.path.islink(path):
            return _skip(path, "broken_link", f"the symbolic link points to a missing {os.readlink(path)!r}")
        return _skip(path, "unreadable_file", _oneline(f"{type(e).__name__}: {e.strerror or e}"))
    if not stat.S_ISREG(st.st_mode):
        return _skip(path, "not_regular_file", f"{_file_kind(st.st_mode)}, not a regular file; not opened")
    _check_name(path)
    return path


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device")):
        if test(mode):
            return kind
    return "a device" if stat.S_ISBLK(mode) else "a special file"


def _walk(top: str, scan: InputScan) -> int:
    """Add the supported files under `top` to `scan` (following directory links once); return how many.

    Names starting with '.' or '_' are skipped. A link back into a directory already searched, a
    directory that cannot be listed and a broken link are recorded in `scan.skipped`.
    """
    seen: dict[tuple[int, int], str] = {}
    stack = [top]
    found = 0
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
            key = (st.st_dev, st.st_ino)
            if key in seen:
                detail = f"the same directory as {show_path(seen[key])}; searched once"
                scan.skipped.append(_skip(directory, "symlink_loop", detail))
                continue
            seen[key] = directory
            entries = sorted(os.scandir(directory), key=lambda e: e.name, reverse=True)
        except OSError as e:
            scan.skipped.append(ReadIssue(show_path(directory), "unreadable_dir", "directory", _os_detail(e)))
            continue
        for entry in entries:
            found += _walk_entry(entry, stack, scan)
    return found


def _walk_entry(entry: os.DirEntry[str], stack: list[str], scan: InputScan) -> int:
    if entry.name.startswith((".", "_")):
        return 0
    try:
        is_dir = entry.is_dir()  # follows links; False for a broken one
    except OSError:  # a link to itself (ELOOP): classified below
        is_dir = False
    if is_dir:
        stack.append(entry.path)
        return 0
    if entry.is_symlink() and not os.path.exists(entry.path):
        result = _classify(entry.path)  # a broken link or a link loop: it may have been a directory
    elif _is_supported(entry.name):
        result = _classify(entry.path)
    else:
        return 0
    if isinstance(result, ReadIssue):
        scan.skipped.append(result)
        return 0
    scan.files.append(result)
    return 1


def _os_detail(e: OSError) -> str:
    return _oneline(f"{type(e).__name__}: {e.strerror or e}")


def _scan_one(given: str, scan: InputScan) -> int:
    """Add what one input argument names to `scan`; return how many files it contributed."""
    path = os.path.expanduser(given)
    if os.path.isdir(path):
        return _walk(path, scan)
    if os.path.lexists(path):
        detect_format(path)
        result = _classify(path)
        if isinstance(result, ReadIssue):
            scan.skipped.append(result)
            return 0
        scan.files.append(result)
        return 1
    if glob.has_magic(path):
        found = 0
        for match in sorted(glob.glob(path, recursive=True)):
            if os.path.isdir(match):
                found += _walk(match, scan)
            elif _is_supported(os.path.basename(match)):
                result = _classify(match)
                if isinstance(result, ReadIssue):
                    scan.skipped.append(result)
                else:
                    scan.files.append(result)
                    found += 1
        return found
    raise InputError(f"{show_path(given)}: no such file or directory. Accepted: {_ACCEPTED}")


def scan_inputs(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> InputScan:
    """Turn files, directories and glob patterns into sorted, de-duplicated absolute file paths.

    Only regular files are returned; FIFOs, sockets, broken links, directory loops and unlistable
    directories are never opened and come back in `skipped`, one `ReadIssue` each. A named file
    must have a supported extension. Raises `InputError` for an argument that does not exist or
    contributes no readable file, and for a file name that is not valid UTF-8.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    scan = InputScan()
    for item in inputs:
        given = os.fspath(item)
        before = len(scan.skipped)
        if _scan_one(given, scan) == 0:
            raise InputError(_nothing_found(given, scan.skipped[before:]))
    scan.files = sorted({os.path.abspath(f) for f in scan.files})
    scan.skipped = [dataclasses.replace(i, source=os.path.abspath(i.source)) for i in scan.skipped]
    return scan


def _nothing_found(given: str, skipped: list[ReadIssue]) -> str:
    if skipped:
        first = skipped[0]
        return (
            f"{show_path(given)}: no readable input files ({len(skipped)} skipped, e.g. "
            f"{first.source}: {first.reason}: {first.detail}). Accepted: {_ACCEPTED}"
        )
    what = "pattern matches" if glob.has_magic(given) and not os.path.isdir(given) else "directory holds"
    return f"{show_path(given)}: {what} no supported input files. Accepted: {_ACCEPTED}"


def expand_inputs(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str]:
    """The regular files of `scan_inputs`; each skipped entry is logged as a warning.

    Callers that keep accounts (the corpus pipeline, `textio.iter_texts`) should call
    `scan_inputs` and count `skipped` with their other issues.
    """
    scan = scan_inputs(inputs)
    for issue in scan.skipped:
        log.warning("skipped input: %s", issue)
    return scan.files


# --------------------------------------------------------------------------- reading one file


def iter_file(
    path: str | os.PathLike[str],
    *,
    text_key: str = "text",
    fallback_text_keys: Iterable[str] = ("raw_content",),
    html_extractor: str = "resiliparse",
    fmt: str | None = None,
    max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES,
) -> Iterator[RawDoc | ReadIssue]:
    """Stream the documents of one file, one `RawDoc` or `ReadIssue` per unit (see module doc).

    `fmt` overrides the format detected from the name. `max_unit_bytes` caps one JSONL line, WARC
    record or text file once decompressed (a bigger one is a `too_large` issue). Raises only for an
    unsupported name (`InputError`), an unknown `html_extractor` (`ValueError`) or a missing
    trafilatura (`ImportError`); everything wrong with the file's content comes back as a `ReadIssue`.
    """
    source = os.fspath(path)
    fmt = fmt or detect_format(source)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    keys = tuple(dict.fromkeys((text_key, *fallback_text_keys)))
    cap = max_unit_bytes
    reader: Callable[[str, IO[bytes]], Iterator[RawDoc | ReadIssue]]
    if fmt in ("wet", "warc"):
        extract = _html_extractor(html_extractor)

        def reader(label: str, fh: IO[bytes]) -> Iterator[RawDoc | ReadIssue]:
            return _iter_warc(label, fh, extract, cap)
    elif fmt == "jsonl":

        def reader(label: str, fh: IO[bytes]) -> Iterator[RawDoc | ReadIssue]:
            return _iter_jsonl(label, fh, keys, cap)
    elif fmt == "parquet":

        def reader(label: str, fh: IO[bytes]) -> Iterator[RawDoc | ReadIssue]:
            return _iter_parquet(label, fh, keys)
    else:

        def reader(label: str, fh: IO[bytes]) -> Iterator[RawDoc | ReadIssue]:
            return _iter_txt(label, fh, cap)

    return _guarded(source, reader, sniff=fmt != "parquet")


def _open_regular(source: str) -> IO[bytes] | ReadIssue:
    """Open `source` for reading without ever blocking: a FIFO or device is reported, not read."""
    label = show_path(source)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        return ReadIssue(label, "unreadable_file", "file", _os_detail(e))
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    os.close(fd)
    if stat.S_ISDIR(mode):
        return ReadIssue(label, "unreadable_file", "file", "IsADirectoryError: it is a directory")
    return ReadIssue(label, "not_regular_file", "file", f"{_file_kind(mode)}, not a regular file; not read")


def _guarded(
    source: str, reader: Callable[[str, IO[bytes]], Iterator[RawDoc | ReadIssue]], sniff: bool
) -> Iterator[RawDoc | ReadIssue]:
    """Open the file, report unreadable, empty and mis-encoded files, and turn I/O errors into issues."""
    label = show_path(source)
    fh = _open_regular(source)
    if isinstance(fh, ReadIssue):
        yield fh
        return
    produced = 0
    try:
        if os.fstat(fh.fileno()).st_size == 0:
            yield ReadIssue(label, "empty_file", "file", "the file has 0 bytes")
            return
        wrong = _sniff_wrong_format(fh.read(4096)) if sniff else None
        if wrong is not None:
            yield ReadIssue(label, wrong[0], "file", wrong[1])
            return
        for item in reader(label, fh):
            produced += 1
            yield item
        if produced == 0:
            yield ReadIssue(label, "empty_file", "file", "the file holds no documents")
    except OSError as e:
        yield ReadIssue(label, "unreadable_file", f"after {produced} units", _os_detail(e))
    finally:
        fh.close()


def _oneline(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- what the bytes really are

_OTHER_COMPRESSION = (
    (b"BZh", "bzip2", "bunzip2 -k"),
    (b"\xfd7zXZ\x00", "xz", "unxz -k"),
    (b"PK\x03\x04", "zip", "unzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z", "7z x"),
    (b"\x04\x22\x4d\x18", "lz4", "unlz4"),
)


def _sniff_wrong_format(head: bytes) -> tuple[str, str] | None:
    """(reason, detail) when the first bytes show data this reader cannot use, else None."""
    for magic, kind, command in _OTHER_COMPRESSION:
        if head.startswith(magic) and (kind != "bzip2" or _is_bzip2(head)):
            return (
                "unsupported_compression",
                f"this file is {kind}-compressed, whatever its name says; decompress it ({command}) and "
                "give the plain file, or recompress it with gzip or zstd",
            )
    if head.startswith((_GZIP_MAGIC, _ZSTD_MAGIC)):
        return None  # binary, read as such: its NUL bytes say nothing about UTF-16
    return _sniff_utf16(head)


def _is_bzip2(head: bytes) -> bool:
    """'BZh', a block size digit, then the block magic (pi) or the end-of-stream magic (sqrt pi)."""
    return head[3:4] in b"123456789" and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")


def _sniff_content(head: bytes) -> tuple[str, str] | None:
    """Like `_sniff_wrong_format`, for bytes that came out of gzip or zstd (or a plain file)."""
    if head.startswith((_GZIP_MAGIC, _ZSTD_MAGIC)):
        return (
            "unsupported_compression",
            "this file is compressed twice (gzip or zstd inside gzip or zstd); decompress it once "
            "and give that file",
        )
    return _sniff_wrong_format(head)


def _sniff_utf16(head: bytes) -> tuple[str, str] | None:
    """UTF-16/32 by its byte-order mark, or by NUL bytes falling on one parity (ASCII in UTF-16)."""
    encoding = None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "UTF-16 (or UTF-32) with a byte-order mark"
    elif len(head) >= 16 and head.count(0) * 4 >= len(head):
        odd = head[1::2].count(0)
        even = head[0::2].count(0)
        if max(odd, even) >= 0.9 * (odd + even):
            encoding = "UTF-16" + ("LE" if odd > even else "BE") + " without a byte-order mark"
    if encoding is None:
        return None
    return (
        "utf16_text",
        f"this file is {encoding}, not UTF-8; convert it: iconv -f UTF-16 -t UTF-8 FILE > NEW",
    )


# --------------------------------------------------------------------------- gzip and zstd


class _DecodeError(Exception):
    """Raised by `_Decompressed` in place of the silent truncation/corruption of other readers."""

    def __init__(self, reason: str, member_offset: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.member_offset = member_offset
        self.detail = detail


class _Codec:
    """One compressed member/frame at a time, in bounded steps: gzip (zlib) or zstd."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.magic = _GZIP_MAGIC if name == "gzip" else _ZSTD_MAGIC
        self.obj: Any = None

    def start(self) -> None:
        if self.name == "gzip":
            self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:
            import zstandard

            self.obj = zstandard.ZstdDecompressor().decompressobj()

    @property
    def done(self) -> bool:
        return self.obj is None or self.obj.eof

    def step(self, data: bytes) -> tuple[bytes, bytes]:
        """Decompress some of `data`: (output, input left over). Raises `ValueError` on corrupt data."""
        if self.name == "gzip":
            try:
                out = self.obj.decompress(data, _MAX_OUT)
            except zlib.error as e:
                raise ValueError(str(e)) from None
            return out, (self.obj.unused_data if self.obj.eof else self.obj.unconsumed_tail)
        import zstandard

        piece, later = data[:_ZSTD_PIECE], data[_ZSTD_PIECE:]
        try:
            out = self.obj.decompress(piece)
        except zstandard.ZstdError as e:
            raise ValueError(str(e)) from None
        return out, ((self.obj.unused_data + later) if self.obj.eof else later)


class _Decompressed:
    """Read-only stream of the decompressed bytes of a (multi-member) gzip or zstd file.

    Raises `_DecodeError` on truncation or corrupt data instead of returning short data. With
    `hold`, a member's bytes are released only once the member is complete (its checksum verified)
    or `hold` bytes are pending, so a corrupt WARC record never reaches the parser.
    """

    def __init__(self, fh: IO[bytes], codec: str, start: int = 0, hold: int = 0) -> None:
        self.fh = fh
        self.codec = _Codec(codec)
        self.hold = hold
        self.failed: _DecodeError | None = None
        fh.seek(start)
        self.inp = b""  # raw bytes not yet consumed by the decompressor
        self.inp_off = start  # raw offset of inp[0]
        self.member_off = start
        self.buf = b""
        self.bufpos = 0

    def _more_input(self) -> bool:
        data = self.fh.read(_CHUNK)
        if data:
            self.inp += data
        return bool(data)

    def _error(self, kind: str, detail: str) -> _DecodeError:
        name = "gzip" if self.codec.name == "gzip" else "zstd"
        return _DecodeError(f"{kind}_{name}", self.member_off, detail)

    def _next_member(self) -> bool:
        """Start the next member after skipping NUL padding; False at the clean end of the file."""
        while True:
            stripped = self.inp.lstrip(b"\x00")
            self.inp_off += len(self.inp) - len(stripped)
            self.inp = stripped
            if len(self.inp) >= len(self.codec.magic) or not self._more_input():
                break
        if not self.inp:
            return False
        if not self.inp.startswith(self.codec.magic):
            raise self._error(
                "corrupt",
                f"byte {self.inp_off}: data after the last {self.codec.name} member is not {self.codec.name}",
            )
        self.codec.start()
        self.member_off = self.inp_off
        return True

    def _fill(self) -> bool:
        """Decompress the next piece into `buf`; False at the clean end of the file."""
        if self.failed is not None:
            raise self.failed
        pending: list[bytes] = []
        size = 0
        while True:
            if self.codec.done:
                if pending:
                    break
                if not self._next_member():
                    return False
            if not self.inp and not self._more_input():
                self.failed = self._error(
                    "truncated",
                    f"the file ends inside the {self.codec.name} member starting at byte {self.member_off}",
                )
                if pending:
                    break
                raise self.failed
            try:
                out, rest = self.codec.step(self.inp)
            except ValueError as e:
                self.failed = self._error(
                    "corrupt", f"{self.codec.name} member at byte {self.member_off}: {e}"
                )
                raise self.failed from None
            self.inp_off += len(self.inp) - len(rest)
            self.inp = rest
            if out:
                pending.append(out)
                size += len(out)
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
        return out


def _codec_of(fh: IO[bytes]) -> str | None:
    fh.seek(0)
    head = fh.read(4)
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    return "zstd" if head == _ZSTD_MAGIC else None


def _open_stream(fh: IO[bytes], start: int = 0, hold: int = 0) -> IO[bytes] | _Decompressed:
    """The file's content: decompressed when it starts with the gzip or zstd magic, whatever its name."""
    codec = _codec_of(fh)
    if codec is not None:
        return _Decompressed(fh, codec, start, hold)
    fh.seek(start)
    return fh


def _decode_issue(label: str, e: _DecodeError, where: str) -> ReadIssue:
    return ReadIssue(label, e.reason, where, _oneline(e.detail))


def _read_capped(stream: IO[bytes] | _Decompressed, cap: int) -> bytes | None:
    """All of `stream`, or None (having read just past `cap`) when it holds more than `cap` bytes."""
    parts: list[bytes] = []
    size = 0
    while chunk := stream.read(min(_CHUNK, cap + 1 - size)):
        parts.append(chunk)
        size += len(chunk)
        if size > cap:
            return None
    return b"".join(parts)


# --------------------------------------------------------------------------- JSONL


class _Oversized:
    """Stands for a line longer than the cap, which was skipped rather than held."""

    def __init__(self, size: int) -> None:
        self.size = size


def _iter_lines(stream: IO[bytes] | _Decompressed, cap: int) -> Iterator[bytes | _Oversized]:
    """Yield lines (without the newline) of up to `cap` bytes, reading bounded chunks; longer ones
    come as `_Oversized` and are never held whole."""
    parts: list[bytes] = []
    held = 0
    over = -1  # bytes of the current line seen so far, once it passed the cap
    while chunk := stream.read(_CHUNK):
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:nl]
            if over >= 0 or held + len(piece) > cap:
                yield _Oversized(max(over, held) + len(piece))
            else:
                yield b"".join([*parts, piece]) if parts else piece
            parts, held, over = [], 0, -1
            start = nl + 1
        rest = chunk[start:]
        if over >= 0:
            over += len(rest)
        elif held + len(rest) > cap:
            parts, over = [], held + len(rest)
        elif rest:
            parts.append(rest)
            held += len(rest)
    if over >= 0:
        yield _Oversized(over)
    elif parts:
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


def _title(value: Any) -> str | None:
    """A title as one short line (None when absent or not a string)."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())[:_MAX_TITLE_CHARS]
    return text or None


def _opt_str(*values: Any) -> str | None:
    for value in values:
        if value is not None and value != "":
            return value if isinstance(value, str) else str(value)
    return None


def _record_doc(
    label: str, obj: dict[str, Any], keys: tuple[str, ...], fallback_id: str, where: str
) -> RawDoc | ReadIssue:
    text, reason, detail = _pick_text(obj, keys)
    if text is None:
        return ReadIssue(label, reason, where, detail)
    url = obj.get("url")
    return RawDoc(
        text=text,
        id=_opt_str(obj.get("id"), obj.get("digest")) or fallback_id,
        url=url if isinstance(url, str) and url else None,
        source=label,
        date=_opt_str(obj.get("date"), obj.get("date_download")),
        title=_title(obj.get("title")),
    )


def _jsonl_line(
    label: str, line: bytes, keys: tuple[str, ...], line_no: int, base: str
) -> RawDoc | ReadIssue:
    where = f"line {line_no}"
    try:
        obj = _loads(line)
    except _JSONError as e:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as u:
            return ReadIssue(label, "invalid_utf8", where, f"invalid UTF-8 at byte {u.start} of the line")
        return ReadIssue(label, "invalid_json", where, _oneline(str(e)))
    if not isinstance(obj, dict):
        return ReadIssue(label, "not_an_object", where, f"the line holds a JSON {type(obj).__name__}")
    return _record_doc(label, obj, keys, f"{base}:{line_no}", where)


def _iter_jsonl(label: str, fh: IO[bytes], keys: tuple[str, ...], cap: int) -> Iterator[RawDoc | ReadIssue]:
    base = os.path.basename(label)
    line_no = 0
    try:
        for line in _iter_lines(_open_stream(fh), cap):
            line_no += 1
            if isinstance(line, _Oversized):
                yield ReadIssue(
                    label,
                    "too_large",
                    f"line {line_no}",
                    f"{line.size} bytes > max_unit_bytes={cap}; skipped",
                )
                continue
            if line_no == 1:
                wrong = _sniff_content(line[:4096])
                if wrong is not None:  # e.g. UTF-16 inside gzip: one issue, not one per "line"
                    yield ReadIssue(label, wrong[0], "file", wrong[1])
                    return
                if line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
            if line.strip():
                yield _jsonl_line(label, line, keys, line_no, base)
    except _DecodeError as e:
        yield _decode_issue(label, e, f"line {line_no + 1}")


# --------------------------------------------------------------------------- Parquet


def _iter_parquet(label: str, fh: IO[bytes], keys: tuple[str, ...]) -> Iterator[RawDoc | ReadIssue]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = os.path.basename(label)
    errors = (pa.ArrowException, OSError, ValueError)
    try:
        pf = pq.ParquetFile(fh)
        names = set(pf.schema_arrow.names)
        n_groups = pf.num_row_groups
    except errors as e:
        yield ReadIssue(label, "corrupt_parquet", "file", _oneline(f"{type(e).__name__}: {e}"))
        return
    text_cols = [k for k in keys if k in names]
    if not text_cols:
        yield ReadIssue(
            label,
            "missing_text_column",
            "schema",
            _oneline(
                f"none of the columns {', '.join(keys)} exists ({pf.metadata.num_rows} rows "
                f"unread); columns: {', '.join(sorted(names))}"
            ),
        )
        return
    columns = text_cols + [c for c in ("id", "digest", "url", "date", "date_download", "title") if c in names]
    row = 0
    for group in range(n_groups):
        group_rows = pf.metadata.row_group(group).num_rows
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=256, row_groups=[group], columns=columns):
                data = {name: batch.column(name).to_pylist() for name in batch.schema.names}
                for i in range(batch.num_rows):
                    obj = {name: values[i] for name, values in data.items()}
                    yield _record_doc(label, obj, keys, f"{base}:{row}", f"row {row}")
                    row += 1
                    done += 1
        except errors as e:
            yield ReadIssue(
                label,
                "corrupt_parquet",
                f"row group {group} (row {row})",
                _oneline(f"{group_rows - done} rows unread: {type(e).__name__}: {e}"),
            )
            row += group_rows - done


# --------------------------------------------------------------------------- plain text


def _iter_txt(label: str, fh: IO[bytes], cap: int) -> Iterator[RawDoc | ReadIssue]:
    try:
        data = _read_capped(_open_stream(fh), cap)
    except _DecodeError as e:
        yield _decode_issue(label, e, "file")
        return
    if data is None:
        yield ReadIssue(label, "too_large", "file", f"more than max_unit_bytes={cap} bytes; skipped")
        return
    if not data:
        return  # reported as empty_file
    wrong = _sniff_content(data[:4096])
    if wrong is not None:
        yield ReadIssue(label, wrong[0], "file", wrong[1])
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield ReadIssue(label, "invalid_utf8", f"byte {e.start}", "the file is not valid UTF-8")
        return
    yield RawDoc(text=text, id=os.path.basename(label), url=None, source=label)


# --------------------------------------------------------------------------- HTML


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


_VOID = "area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr"
_TAG = re.compile(rf"<(/?)(?!(?:{_VOID})[\s/>])[a-zA-Z]", re.IGNORECASE)


def _html_depth_over(html: str, limit: int) -> int | None:
    """The element depth of `html` when it exceeds `limit`, else None (cheap for ordinary pages).

    Counting tags bounds the depth from above; only a page whose tag count says it might be too deep
    (often unclosed <p> or <li>, which the parser closes itself) is parsed and walked.
    """
    depth = deepest = 0
    for m in _TAG.finditer(html):
        depth += -1 if m.group(1) else 1
        deepest = max(deepest, depth)
    if deepest <= limit:
        return None
    from resiliparse.parse.html import HTMLTree

    node, depth = HTMLTree.parse(html).document, 0
    while node is not None:  # first_child/next/parent: linear (child_nodes is quadratic)
        child = node.first_child
        if child is not None:
            node, depth = child, depth + 1
            if depth > limit:
                return depth
            continue
        while node is not None and node.next is None:
            node, depth = node.parent, depth - 1
        node = node.next if node is not None else None
    return None


_TITLE_OPEN = re.compile(r"<title\b[^>]*>", re.IGNORECASE)


def html_title(html: str) -> str | None:
    """The text of the first ``<title>`` of the page (entities decoded, one line), or None.

    Main-text extraction drops the title, so the reader keeps it for the filters that look at it
    (a gambling brand injected into a copied article's title). Only the first `_TITLE_SCAN`
    characters are searched, with plain finds, so a hostile page costs linear time.
    """
    m = _TITLE_OPEN.search(html, 0, _TITLE_SCAN)
    if m is None:
        return None
    inner = html[m.end() : m.end() + 4 * _MAX_TITLE_CHARS]
    end = inner.lower().find("</title")
    if end < 0:
        return None
    return _title(htmllib.unescape(re.sub(r"<[^<>]*>", " ", inner[:end])))


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


# --------------------------------------------------------------------------- WARC framing


class _Peekable:
    """A byte stream with look-ahead and push-back, so the framer can re-read after a bad record."""

    def __init__(self, stream: IO[bytes] | _Decompressed) -> None:
        self.stream = stream
        self.buf = b""
        self.i = 0
        self.base = 0  # stream offset of buf[0]
        self.eof = False
        self.error: _DecodeError | None = None  # why the stream ended early, if it did

    @property
    def pos(self) -> int:
        return self.base + self.i

    def available(self) -> int:
        return len(self.buf) - self.i

    def fill(self, n: int) -> bool:
        """Make at least `n` bytes available; False when the stream ends first."""
        if self.available() >= n:
            return True
        parts, have = [self.buf[self.i :]], self.available()
        while have < n and not self.eof:
            try:
                chunk = self.stream.read(_CHUNK)
            except _DecodeError as e:  # the data before the error is still framed and read
                self.error, chunk = e, b""
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.base, self.buf, self.i = self.pos, b"".join(parts), 0
        return have >= n

    def peek(self, n: int) -> bytes:
        self.fill(n)
        return self.buf[self.i : self.i + n]

    def read(self, n: int) -> bytes:
        self.fill(n)
        out = self.buf[self.i : self.i + n]
        self.i += len(out)
        return out

    def unread(self, data: bytes) -> None:
        self.base, self.buf, self.i = self.pos - len(data), data + self.buf[self.i :], 0

    def find(self, pattern: bytes, limit: int) -> int:
        """Offset of `pattern` within the next `limit` bytes, or -1."""
        while True:
            hit = self.buf.find(pattern, self.i, self.i + limit)
            if hit >= 0:
                return hit - self.i
            if self.available() >= limit or self.eof:
                return -1
            self.fill(self.available() + _CHUNK)

    def skip_to(self, pattern: bytes, limit: int | None = None) -> bool:
        """Discard bytes until `pattern` starts (True), or until `limit` bytes or the stream end
        have been passed (False). Memory stays bounded whatever the distance."""
        left = limit
        while True:
            window = self.available() if left is None else min(self.available(), left)
            hit = self.buf.find(pattern, self.i, self.i + window)
            if hit >= 0:
                self.i = hit
                return True
            if window == left or (self.eof and window == self.available()):
                self.i += window
                return False
            drop = max(0, window - (len(pattern) - 1))  # keep a possible start of the pattern
            self.i += drop
            if left is not None:
                left -= drop
            self.fill(self.available() + 1)


_BOUNDARY = b"\nWARC/1."  # a record starts at a line start


def _resync(src: _Peekable) -> bool:
    """Move to the next line that starts a WARC record; False at the end of the stream."""
    if not src.skip_to(_BOUNDARY):
        return False
    src.read(1)
    return True


def _content_length(header: bytes) -> int | None:
    for line in header.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None


def _trailer_ok(src: _Peekable, payload: bytes) -> bool:
    """Whether the record's declared end is where the data says the record ends.

    The block must be followed by its blank line. When garbage (not a record, not the end) comes
    after that, the record is still believed unless its payload holds a record boundary itself,
    which is what a Content-Length running into the next record looks like.
    """
    look = src.peek(64)
    if not look.startswith((b"\r\n\r\n", b"\n\n")):
        return False
    rest = look.lstrip(b"\r\n")
    if rest.startswith(b"WARC/") or (not rest and len(look) < 64):
        return True
    return b"\r\n\r\nWARC/1." not in payload


@dataclass(slots=True)
class _Framed:
    """One record cut from the stream: its bytes when sound, else why not."""

    raw: bytes | None
    reason: str = ""
    detail: str = ""
    last: bool = False  # nothing can be read after it


def _frame_records(src: _Peekable, cap: int) -> Iterator[_Framed]:
    """Cut the stream into records by header block and Content-Length, checking each record's end.

    A record whose declared end is not followed by a blank line and the next ``WARC/`` record is
    bad: reading resumes at the first record boundary after its header (inside its declared payload
    when the length was too large, after it when too small), so no record is swallowed.
    """
    while True:
        while src.peek(1) in (b"\r", b"\n"):
            src.read(1)
        if not src.peek(1):
            return
        at = src.pos
        header = _read_header(src, at)
        if isinstance(header, _Framed):
            yield header
            if header.last or not _resync(src):
                return
            continue
        length = _content_length(header)
        if length is None:
            framed = _Framed(None, "corrupt_warc_record", f"byte {at}: missing or invalid Content-Length")
        elif len(header) + length > cap:
            framed = _skip_payload(src, at, length, cap)
        else:
            framed = _take_payload(src, at, length)
        if framed.raw is not None:
            framed.raw = header + framed.raw
        yield framed
        if framed.last or (length is None and not _resync(src)):
            return


def _read_header(src: _Peekable, at: int) -> bytes | _Framed:
    """The record's header block (through its blank line), or the issue that stops it."""
    if src.peek(5) != b"WARC/":
        return _Framed(None, "corrupt_warc_record", f"byte {at}: no WARC/ version line where a record starts")
    end = src.find(b"\r\n\r\n", _MAX_WARC_HEADER)
    if end >= 0:
        return src.read(end + 4)
    if src.eof and src.available() < _MAX_WARC_HEADER:
        return _Framed(
            None, "truncated_record", f"byte {at}: the file ends inside the record header", last=True
        )
    src.read(1)  # resynchronise after this record's start
    return _Framed(None, "corrupt_warc_record", f"byte {at}: a record header longer than 64 KiB")


def _bad_length(at: int, length: int, how: str, last: bool = False) -> _Framed:
    detail = (
        f"byte {at}: Content-Length {length} {how}; the record is skipped, reading resumes at the next one"
    )
    return _Framed(None, "bad_content_length", detail, last)


def _take_payload(src: _Peekable, at: int, length: int) -> _Framed:
    payload = src.read(length)
    if len(payload) == length and _trailer_ok(src, payload):
        return _Framed(payload)
    hit = payload.find(_BOUNDARY)
    if hit >= 0:  # the declared length runs into the next record
        src.unread(payload[hit + 1 :])
        return _bad_length(at, length, "runs past the end of the record")
    if len(payload) < length:
        return _Framed(None, "truncated_record", f"byte {at}: the file ends inside the record", True)
    last = not _resync(src)  # the declared length ends early
    return _bad_length(at, length, "ends before the record does", last)


def _skip_payload(src: _Peekable, at: int, length: int, cap: int) -> _Framed:
    """Pass over a payload too large to hold, stopping early at a record boundary inside it."""
    start = src.pos
    if src.skip_to(_BOUNDARY, length):
        src.read(1)
        return _bad_length(at, length, f"runs past a record boundary at byte {src.pos - 1}")
    if src.pos - start < length:
        return _Framed(None, "truncated_record", f"byte {at}: the file ends inside the record", True)
    if not _trailer_ok(src, b""):
        last = not _resync(src)
        return _bad_length(at, length, "does not end the record", last)
    return _Framed(None, "too_large", f"byte {at}: a {length}-byte record > max_unit_bytes={cap}; skipped")


# --------------------------------------------------------------------------- WARC records


def _record_id(record: Any, fallback: str) -> str:
    rid = record.rec_headers.get_header("WARC-Record-ID")
    return rid.strip().strip("<>") if rid else fallback


def _parse_record(raw: bytes) -> Any:
    """A warcio record from one framed record's bytes (headers, HTTP headers, decoded content)."""
    from warcio.recordloader import ArcWarcRecordLoader

    loader = ArcWarcRecordLoader(verify_http=False)  # as warcio's ArchiveIterator reads
    return loader.parse_record_stream(io.BytesIO(raw), known_format="warc")


def _is_document_record(raw: bytes) -> bool:
    """Whether the header says conversion or response (other records are not parsed at all)."""
    head = raw[: raw.find(b"\r\n\r\n")].lower()
    return re.search(rb"\r\nwarc-type:[ \t]*(conversion|response)[ \t]*(\r\n|$)", head) is not None


def _warc_item(
    label: str, raw: bytes, where: str, fallback_id: str, extract: Callable[[str, str | None], str], cap: int
) -> RawDoc | ReadIssue | None:
    """Turn one framed WARC record into a document, an issue, or None for non-document records."""
    if not _is_document_record(raw):
        return None
    try:
        record = _parse_record(raw)
    except Exception as e:  # warcio raises ArchiveLoadFailed, ValueError, ... on bad records
        return ReadIssue(label, "corrupt_warc_record", where, _oneline(f"{type(e).__name__}: {e}"))
    if record.rec_type not in ("conversion", "response"):
        return None
    rid = _record_id(record, fallback_id)
    url = record.rec_headers.get_header("WARC-Target-URI") or None
    date = record.rec_headers.get_header("WARC-Date") or None
    if record.rec_type == "conversion":
        data = _read_capped(record.content_stream(), cap)
        if data is None:
            return ReadIssue(label, "too_large", where, f"{rid}: more than max_unit_bytes={cap} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            return ReadIssue(
                label, "invalid_utf8", where, f"{rid}: invalid UTF-8 at byte {e.start} of the payload"
            )
        return RawDoc(text=text, id=rid, url=url, source=label, date=date)
    return _response_item(label, record, where, rid, extract, cap)


def _response_item(
    label: str, record: Any, where: str, rid: str, extract: Callable[[str, str | None], str], cap: int
) -> RawDoc | ReadIssue:
    http = record.http_headers
    if http is None:
        ctype = record.rec_headers.get_header("Content-Type") or "unknown"
        return ReadIssue(label, "non_html_payload", where, f"{rid}: no HTTP headers (record type {ctype})")
    status = http.get_statuscode() or ""
    if not status.startswith("2"):
        return ReadIssue(label, "non_2xx_status", where, f"{rid}: HTTP status {status or 'missing'}")
    ctype = http.get_header("Content-Type") or record.rec_headers.get_header("WARC-Identified-Payload-Type")
    mime = ctype.split(";")[0].strip().lower() if ctype else ""
    if mime and mime not in _HTML_TYPES:
        return ReadIssue(label, "non_html_payload", where, _oneline(f"{rid}: content type {mime}"))
    try:  # the HTTP content may be gzip-, deflate- or br-encoded: a bomb is capped here too
        payload = _http_body(record, cap)
    except Exception as e:
        return ReadIssue(label, "corrupt_warc_record", where, _oneline(f"{rid}: {type(e).__name__}: {e}"))
    if payload is None:
        return ReadIssue(label, "too_large", where, f"{rid}: decoded payload > max_unit_bytes={cap} bytes")
    if not mime and not _looks_like_html(payload):
        return ReadIssue(
            label, "non_html_payload", where, f"{rid}: no content type and the payload is not HTML"
        )
    url = record.rec_headers.get_header("WARC-Target-URI") or None
    try:
        html = _decode_html(payload, ctype)
        depth = _html_depth_over(html, MAX_HTML_DEPTH)
        if depth is not None:
            return ReadIssue(
                label,
                "html_too_deep",
                where,
                f"{rid}: elements nested {depth}+ deep (limit {MAX_HTML_DEPTH})",
            )
        text = extract(html, url)
    except Exception as e:  # extractors raise many kinds of errors on hostile HTML
        return ReadIssue(label, "html_extraction_failed", where, _oneline(f"{rid}: {type(e).__name__}: {e}"))
    date = record.rec_headers.get_header("WARC-Date") or None
    return RawDoc(text=text, id=rid, url=url, source=label, date=date, title=html_title(html))


def _http_body(record: Any, cap: int) -> bytes | None:
    """The decoded HTTP body, or None beyond `cap` bytes.

    warcio decodes gzip and deflate; its brotli path fails on brotli >= 1.2 (AttributeError on every
    br response), so br is decoded here, in bounded output steps.
    """
    encoding = (record.http_headers.get_header("Content-Encoding") or "").strip().lower()
    if encoding != "br":
        return _read_capped(record.content_stream(), cap)
    raw = _read_capped(record.raw_stream, cap)
    if raw is None:
        return None
    try:
        import brotli
    except ImportError:
        raise ValueError("a Content-Encoding: br body needs the brotli package: pip install brotli") from None
    decoder = brotli.Decompressor()
    out = decoder.process(raw, output_buffer_limit=cap + 1)
    if len(out) > cap:
        return None
    if not decoder.is_finished():
        raise ValueError("the brotli-encoded body is truncated or corrupt")
    return out


def _find_resync(fh: IO[bytes], start: int, magic: bytes) -> int | None:
    """Raw offset of the next compressed member (its magic) at or after `start`, or None."""
    fh.seek(start)
    offset, carry = start, b""
    while chunk := fh.read(_CHUNK):
        data = carry + chunk
        hit = data.find(magic)
        if hit >= 0:
            return offset - len(carry) + hit
        carry = data[-(len(magic) - 1) :]
        offset += len(chunk)
    return None


def _iter_warc(
    label: str, fh: IO[bytes], extract: Callable[[str, str | None], str], cap: int
) -> Iterator[RawDoc | ReadIssue]:
    """Read WARC/WET records framed by `_frame_records`; after a corrupt compressed member, resume at
    the next member.

    One issue is reported per corrupt stretch: a restart that fails before framing any record
    (say, at a false gzip magic inside compressed data) belongs to the stretch already reported.
    """
    base = os.path.basename(label)
    codec = _codec_of(fh)
    magic = _GZIP_MAGIC + b"\x08" if codec == "gzip" else _ZSTD_MAGIC
    record_no = 0
    start = 0
    in_bad_stretch = False
    while True:
        src = _Peekable(_open_stream(fh, start, hold=_WARC_HOLD))
        for framed in _frame_records(src, cap):
            if framed.last and src.error is not None:
                break  # a record cut short by the decompression error reported below
            record_no += 1
            in_bad_stretch = False
            where = f"record {record_no}"
            if framed.raw is None:
                yield ReadIssue(label, framed.reason, where, _oneline(framed.detail))
                continue
            item = _warc_item(label, framed.raw, where, f"{base}:{record_no}", extract, cap)
            if item is not None:
                yield item
        e = src.error
        if e is None:
            return
        if e.reason.startswith("truncated"):
            yield _decode_issue(label, e, f"record {record_no + 1}")
            return
        if not in_bad_stretch:
            record_no += 1
            in_bad_stretch = True
            yield _decode_issue(label, e, f"record {record_no}")
        resume = _find_resync(fh, e.member_offset + 1, magic)
        if resume is None:
            return
        start = resume
