"""`zhtw-pretrain`: stage 3 of zhtw. `prepare` resizes and initialises the model, `train` runs QLoRA, `eval`
measures bits per character, `export` is `zhtw-export` (merge the adapter, write the model and GGUF)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from zhtw.common.cli import EXIT_REFUSED, EXIT_USAGE, error_line, missing_extra_message, version

PROG = "zhtw-pretrain"
USAGE = """usage: zhtw-pretrain {prepare,train,eval,export} [options]

  prepare   resize a base Llama model to the extended tokenizer and initialise the new rows
  train     QLoRA continued pretraining with trainable new-token rows and S²-Attn
  eval      bits per character, chars per token, generation chars/s and English KL of models
  export    merge the adapter and write the model, card and GGUF (the same as `zhtw-export`)

Run `zhtw-pretrain COMMAND --help` for the options of each command; `--version` prints the version.
"""


def _command(name: str) -> Callable[[list[str]], int | None] | None:
    """The `main` of a sub-command, imported only when asked for (train needs torch, prepare does not)."""
    if name == "prepare":
        from zhtw.pretrain.prepare import main
    elif name == "train":
        from zhtw.pretrain.train import main
    elif name == "eval":
        from zhtw.pretrain.evaluate import main
    elif name == "export":
        from zhtw.pretrain.export import main
    else:
        return None
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `zhtw-pretrain`: the sub-command's exit status; 2 for a missing or unknown command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:
        print(f"{PROG} (zhtw {version()})")
        return 0
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else EXIT_USAGE
    try:
        run = _command(args[0])
    except ModuleNotFoundError as e:  # `pip install .` has the corpus stage only: name the extra
        error_line(f"{PROG} {args[0]}", missing_extra_message(e))
        return EXIT_REFUSED
    if run is None:
        print(f"{PROG}: error: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    code = run(args[1:])
    return 0 if code is None else int(code)


if __name__ == "__main__":
    raise SystemExit(main())
