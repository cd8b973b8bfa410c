"""One command-line convention for every zhtw command (zhtw-corpus, zhtw-tok, zhtw-pretrain, zhtw-export).

`main(argv) -> int` everywhere, through `run_main`: a refusal (`ZhtwError`) prints one line with the fix and
exits 1; a usage error exits 2 (argparse); Ctrl-C exits 130; a file-system error prints one line; a missing
optional dependency names the extra to install; any other exception is a bug and prints one line asking for
`--debug`, which shows the traceback instead. The same option names mean the same thing in every command
(`add_common_options`, `add_workers_option`, `parse_dtype`); old spellings keep working with a note.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import NoReturn

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import show_path

__all__ = [
    "ArgumentParser",
    "DTYPE_ALIASES",
    "DTYPES",
    "EXIT_INTERRUPTED",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "MissingExtraError",
    "add_common_options",
    "add_version",
    "add_workers_option",
    "deprecated_alias",
    "error_line",
    "missing_extra_message",
    "one_line",
    "parse_dtype",
    "run_main",
    "say",
    "version",
]

log = logging.getLogger("zhtw")
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
DTYPE_ALIASES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

# top-level module -> the extra of pyproject.toml that installs it
EXTRA_OF_MODULE: dict[str, str] = {
    "sentencepiece": "tok",
    "google": "tok",  # protobuf
    "transformers": "tok",
    "tiktoken": "tok",
    "matplotlib": "tok",
    "torch": "train",
    "peft": "train",
    "accelerate": "train",
    "datasets": "train",
    "safetensors": "train",
    "huggingface_hub": "train",
    "gguf": "train",
    "tensorboard": "train",
    "bitsandbytes": "gpu",
    "ray": "ray",
    "trafilatura": "trafilatura",
}


class MissingExtraError(ZhtwError):
    """A command needs an optional dependency that is not installed; the message names the extra."""


def version() -> str:
    """The installed zhtw version ('unknown' when running from a source tree that was never installed)."""
    try:
        return metadata.version("zhtw")
    except metadata.PackageNotFoundError:
        return "unknown"


def one_line(message: str) -> str:
    """`message` as one printable line: newlines folded, names that are not UTF-8 escaped."""
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return re.sub(r"\s*\n\s*", " ", text).strip()


def say(message: str, *, quiet: bool = False) -> None:
    """Progress and results on stdout (nothing with --quiet), printable whatever the names hold."""
    if not quiet:
        print(message.encode("utf-8", "backslashreplace").decode("utf-8"), flush=True)


def error_line(prog: str, message: str) -> None:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)


def missing_extra_message(e: ModuleNotFoundError) -> str:
    """What to install when `e.name` is missing: the extra that brings it, or the module itself."""
    top = (e.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return f"the Python module {top or e.name!r} is not installed; install it (pip install {top}) and rerun."
    torch_note = " (install torch first: see README)" if extra in ("train", "gpu") else ""
    return f"this command needs {top}, which is not installed: pip install 'zhtw[{extra}]'{torch_note}."


def os_error_message(e: OSError) -> str:
    """One line for a file-system error: the path, the system's words and the generic fix."""
    where = f"{show_path(e.filename)}: " if e.filename is not None else ""
    return f"{where}{e.strerror or e}; fix that (disk space, permissions, path) and rerun."


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line (`PROG: error: ... (see PROG --help)`), exit 2.

    argparse documents `error` as the method to override; sub-parsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def add_version(parser: argparse.ArgumentParser) -> None:
    """--version: the program and the installed zhtw version."""
    parser.add_argument("--version", action="version", version=f"{parser.prog} (zhtw {version()})")


def add_common_options(parser: argparse.ArgumentParser, *, with_version: bool = True, quiet: bool = True) -> None:
    """--version, --debug and --quiet, the same in every command (sub-commands share the top's --version)."""
    if with_version:
        add_version(parser)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    if quiet:
        parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")


class _DeprecatedAlias(argparse.Action):
    """Stores like the option it stands for, and says once on stderr which spelling to use instead."""

    def __init__(self, *args: object, new: str, **kwargs: object) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        log.warning("%s: %s is deprecated; use %s.", parser.prog, option_string, self.new)
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: object) -> None:
    """Accept the old spelling `old` of option `new` for one more release, with a note (hidden from --help)."""
    parser.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, help=argparse.SUPPRESS, **kwargs)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 or a negative count of workers or tasks is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_workers_option(
    parser: argparse.ArgumentParser, *, default: int | None, help: str, old: Sequence[str] = ()
) -> None:
    """`--workers N` (`-w`): the one spelling of processes/threads; `old` spellings still work with a note."""
    parser.add_argument("--workers", "-w", type=positive_int, default=default, help=help)
    for spelling in old:
        deprecated_alias(parser, spelling, "--workers", "workers", type=positive_int)


def parse_dtype(text: str) -> str:
    """argparse type for --dtype: float32|bfloat16|float16 ('auto' where allowed); fp32/bf16/fp16 as aliases."""
    name = DTYPE_ALIASES.get(text, text)
    if name not in (*DTYPES, "auto"):
        raise argparse.ArgumentTypeError(
            f"unknown dtype {text!r}; choose {', '.join(DTYPES)} (fp32, bf16, fp16 are accepted too)"
        )
    return name


def _exit_status(code: object) -> int:
    """The status a SystemExit carries (argparse: 0 for --help/--version, 2 for a usage error)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else EXIT_REFUSED


def run_main(
    prog: str | Callable[[argparse.Namespace], str],
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
    *,
    usage_errors: tuple[type[BaseException], ...] = (),
    describe_os_error: Callable[[OSError], str] = os_error_message,
    interrupted: str = "",
) -> int:
    """Parse `argv`, run `handler(args)` and turn every outcome into an exit status (see the module doc).

    `prog` names the command in error lines; a function of the arguments can add the sub-command.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return _exit_status(e.code)
    debug = bool(getattr(args, "debug", False))
    name = prog(args) if callable(prog) else prog
    try:
        code = handler(args)
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted{interrupted}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as e:
        if debug:
            raise
        return _report(name, e, usage_errors, describe_os_error)
    return 0 if code is None else code


def _report(
    prog: str,
    e: Exception,
    usage_errors: tuple[type[BaseException], ...],
    describe_os_error: Callable[[OSError], str],
) -> int:
    """One line on stderr for exception `e`, and the exit status it means."""
    if isinstance(e, usage_errors):
        error_line(prog, str(e))
        return EXIT_USAGE
    if isinstance(e, ZhtwError):
        error_line(prog, str(e))
    elif isinstance(e, ModuleNotFoundError):
        error_line(prog, missing_extra_message(e))
    elif isinstance(e, OSError):
        error_line(prog, describe_os_error(e))
    else:
        error_line(prog, f"internal error {type(e).__name__}: {e}. Rerun with --debug for the traceback and report it.")
    return EXIT_REFUSED
