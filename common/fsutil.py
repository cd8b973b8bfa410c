"""Safe file-system helpers shared by all stages: atomic writes, content hashes, output ownership and locks.

The rules they enforce: a metadata file is never left empty or half-written; a directory is removed
only when a zhtw command created it (it carries `OWNER_MARKER`); an output never overlaps an input;
one writer at a time per output directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from zhtw.common.errors import OutputError

__all__ = [
    "OWNER_MARKER",
    "LOCK_NAME",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "sha256_file",
    "files_intact",
    "show_path",
    "check_disjoint",
    "claim_output",
    "clear_owned_output",
    "output_lock",
]

OWNER_MARKER = ".zhtw-output"
LOCK_NAME = ".zhtw.lock"


def show_path(path: str | os.PathLike[str] | bytes) -> str:
    """A printable form of any path, including names that are not valid UTF-8 (escaped, never a crash)."""
    raw = os.fsencode(path)
    text = raw.decode("utf-8", errors="backslashreplace")
    return text


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and an atomic rename.

    A crash, a full disk or a kill leaves either the old file or the new one, never a partial one.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, _new_file_mode(target))  # mkstemp makes 0600; metadata is meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _new_file_mode(target: Path) -> int:
    """The mode an ordinary write would give: the existing file's, else 0666 minus the umask."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """JSON with indent 2 and real UTF-8 (not \\u escapes), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_intact(directory: Path, digests: dict[str, str]) -> bool:
    """Whether every file recorded in `digests` (name -> SHA-256) is in `directory` with that digest."""
    return all((directory / n).is_file() and sha256_file(directory / n) == d for n, d in digests.items())


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.fsencode(path)).decode("utf-8", "surrogateescape"))


def check_disjoint(
    output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *, what: str = "--output"
) -> None:
    """Refuse an output that equals, contains or lies inside any input (after resolving links).

    Called before anything is removed or written, so `--overwrite` can never touch a user's inputs.
    """
    out = _resolved(output)
    for given in inputs:
        inp = _resolved(given)
        if out == inp or inp.is_relative_to(out) or out.is_relative_to(inp):
            raise OutputError(
                f"{what} {show_path(output)} overlaps the input {show_path(given)}; "
                "choose an output directory outside every input."
            )


def claim_output(directory: str | os.PathLike[str]) -> Path:
    """Create `directory` if needed and mark it as written by zhtw (so a later --overwrite may clear it)."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{show_path(out)} exists and is not a directory; choose another output path.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / OWNER_MARKER).touch()
    except OSError as e:
        raise OutputError(f"cannot create the output directory {show_path(out)}: {e.strerror}.") from e
    return out


def clear_owned_output(directory: str | os.PathLike[str], *, command: str) -> None:
    """Empty an output directory for --overwrite, but only one that a zhtw command created.

    A directory without the marker (the user's own files, or one made by an older zhtw) is refused
    with the fix; nothing in it is touched. The lock file, if held by this process, is kept.
    """
    out = Path(directory)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{show_path(out)} exists and is not a directory; choose another output path.")
    if not (out / OWNER_MARKER).is_file():
        raise OutputError(
            f"{show_path(out)} was not created by {command}; refusing to delete it even with --overwrite. "
            "Remove it yourself or choose another output directory."
        )
    for entry in out.iterdir():
        if entry.name in (OWNER_MARKER, LOCK_NAME):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike[str], *, command: str) -> Iterator[Path]:
    """Hold an exclusive advisory lock on `directory` (created if needed) while a command writes into it.

    A second writer fails at once with a clear message instead of mixing its output with the first.
    The lock is released by the kernel when the process dies, so a killed run never leaves it stuck.
    """
    out = claim_output(directory)
    lock_path = out / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise OutputError(
                    f"another {command} is writing into {show_path(out)} (lock {LOCK_NAME} is held); "
                    "wait for it to finish or choose another output directory."
                ) from e
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield out
    finally:
        os.close(fd)
