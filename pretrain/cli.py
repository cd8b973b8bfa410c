"""`zhtw-pretrain`: stage 3 of zhtw. `prepare` resizes and initialises the model, `train` runs QLoRA, `eval`
measures bits per character."""

from __future__ import annotations

import sys

USAGE = """usage: zhtw-pretrain {prepare,train,eval} [options]

  prepare   resize a base Llama model to the extended tokenizer and initialise the new rows
  train     QLoRA continued pretraining with trainable new-token rows and S²-Attn
  eval      bits per character, chars per token, generation chars/s and English KL of models

Run `zhtw-pretrain COMMAND --help` for the options of each command.
"""


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if args else 2)
    command, rest = args[0], args[1:]
    if command == "prepare":
        from zhtw.pretrain.prepare import main as run
    elif command == "train":
        from zhtw.pretrain.train import main as run
    elif command == "eval":
        from zhtw.pretrain.evaluate import main as run
    else:
        print(f"zhtw-pretrain: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    run(rest)


if __name__ == "__main__":
    main()
