"""`zhtw-tok`: build, verify and evaluate a Llama tokenizer extended with a Traditional Chinese vocabulary.

Exit status: 0 done (or nothing to do); 1 refused or failed (bad input files, output not usable, an invariant
broken), with one line naming the file and the fix; 2 a command-line value is wrong. `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from zhtw.common.cli import ArgumentParser, add_common_options, add_version, add_workers_option, run_main, say

PROG = "zhtw-tok"
DEFAULT_VOCAB_SIZE = 61_440  # = zhtw.tokenizer.build.DEFAULT_VOCAB_SIZE (a test checks): no sentencepiece import here
EXIT_REFUSED = 1
EXIT_USAGE = 2


def _say(msg: str) -> None:
    say(msg)


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="zhtw-tok",
        description="Extend a SentencePiece BPE (Llama-family) tokenizer with a Traditional Chinese vocabulary.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_version(p)
    common = argparse.ArgumentParser(add_help=False)
    add_common_options(common, with_version=False)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser(
        "build",
        parents=[common],
        help="train, merge, export and verify an extended tokenizer",
        description="Extend a base tokenizer with a zh-TW vocabulary learned on the corpus, without changing how "
        "the base tokenises anything it already handled. SentencePiece BPE bases (tokenizer.model: Llama-2, "
        "Mistral): train a vocabulary and merge the pieces below every base piece. Byte-level BPE bases "
        "(tokenizer.json: Llama-3.x, Qwen2/2.5): continue BPE training, new merges after every base merge, only "
        "CJK characters and punctuation joined. Writes Hugging Face tokenizer files plus zhtw_tokenizer.json and "
        "verifies them. Rerunning on a finished output is a no-op.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument("--base", required=True, help="base tokenizer: a Hugging Face directory, a bare tokenizer.model "
                   "(SentencePiece BPE with byte fallback: Llama-2, Mistral, stories260K) or a bare tokenizer.json "
                   "(byte-level BPE: Llama-3.x, Qwen2/2.5); the format picks the backend")
    b.add_argument("--corpus", required=True, nargs="+", metavar="PATH",
                   help="corpus files, directories or globs (JSONL(.gz), Parquet, WET/WARC, .txt; a zhtw-corpus output dir)")
    b.add_argument("--output", required=True, help="output directory for the tokenizer files and metadata")
    size = b.add_mutually_exclusive_group()
    size.add_argument("--vocab-size", type=int, default=None,
                      help=f"total ids of the extended tokenizer, base included (default {DEFAULT_VOCAB_SIZE:,} "
                      "for SentencePiece; a multiple of 64 suits GPUs)")
    size.add_argument("--new-tokens", type=int, default=None,
                      help="how many tokens to add (default for byte-level BPE: 32,768; prepare pads the "
                      "embedding to a multiple of 64)")
    b.add_argument("--max-token-chars", type=int, default=None,
                   help="byte-level BPE: the longest new token in characters (default: no limit)")
    b.add_argument("--text-key", default="text", help="JSON/Parquet field that holds the document text")
    b.add_argument("--sample-mb", type=float, default=256.0,
                   help="at most this many MB of UTF-8 text are sampled (seeded) for training; byte-level BPE "
                   "takes an equal share of it from every corpus file")
    b.add_argument("--heldout-mb", type=float, default=3.0,
                   help="MB of documents held back from training to choose pieces by measured token savings")
    b.add_argument("--candidate-factor", type=float, default=1.5,
                   help="train this many times the needed new pieces as candidates (plus the characters)")
    b.add_argument("--prune-rounds", type=int, default=3,
                   help="rounds of encode-and-prune when choosing pieces by savings on the held-back text")
    b.add_argument("--selection", choices=["learned-order", "savings"], default="learned-order",
                   help="how the new pieces are chosen among the candidates: 'savings' prunes the ones that save "
                   "the fewest tokens on the held-back text; 'learned-order' keeps every new character and the "
                   "first merges BPE learned (plus what they need to be buildable); measured better on held-out zh-TW")
    b.add_argument("--split-by-script", action="store_true",
                   help="train like SentencePiece's default: no piece mixes Han with punctuation or digits "
                   "(measured ~7%% more tokens on zh-TW)")
    b.add_argument("--seed", type=int, default=0, help="seed for sampling; same inputs and seed give the same tokenizer")
    b.add_argument("--character-coverage", type=float, default=0.9995,
                   help="share of characters the trained vocabulary covers (rarer ones fall back to bytes)")
    b.add_argument("--max-piece-length", type=int, default=16, help="longest trained piece, in characters")
    b.add_argument("--all-scripts", action="store_true",
                   help="also add new pieces without Chinese characters (changes English/code tokenisation)")
    add_workers_option(b, default=os.cpu_count() or 1, help="threads for training and encoding",
                       old=["--num-threads"])
    b.add_argument("--keep-candidates", action="store_true",
                   help="also write candidates.model, the trained SentencePiece vocabulary the pieces came from")
    b.add_argument("--no-verify", action="store_true", help="skip the verification after building")
    b.add_argument("--overwrite", action="store_true", help="replace an output directory built from other inputs")
    b.add_argument("--verbose", action="store_true", help="show SentencePiece's trainer log")

    v = sub.add_parser(
        "verify",
        parents=[common],
        help="check every invariant of an extended tokenizer",
        description="Check base ids and special tokens unchanged, no duplicate or unbuildable pieces, new scores "
        "below the base, sentencepiece = HF slow = HF fast ids, decode(encode(x)) == x, and English/code "
        "(Python standard library sources, README) tokenised exactly as by the base. Exit 1 with the offending "
        "example on the first failure.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    v.add_argument("directory", help="a zhtw-tok build output directory")
    v.add_argument("--text", nargs="*", default=[], metavar="PATH",
                   help="more texts to check: corpus files/dirs/globs, or any text file read whole (e.g. .py, .md)")
    v.add_argument("--base", default=None,
                   help="base tokenizer to compare with (default: the one recorded in zhtw_tokenizer.json)")

    e = sub.add_parser(
        "eval",
        parents=[common],
        help="compare tokenizers' compression on text files",
        description="Per text file and tokenizer: characters per token, tokens per 1,000 Han characters, "
        "byte-fallback share and unused new pieces (pieces the first tokenizer lacks). Writes eval.md, eval.json "
        "and eval.png and prints the table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    e.add_argument("tokenizers", nargs="+", metavar="TOKENIZER",
                   help="tokenizer directories or tokenizer.model files; the first is the reference (usually the base)")
    e.add_argument("--text", nargs="+", required=True, metavar="PATH",
                   help="text files to measure, each reported separately (corpus formats or plain text)")
    e.add_argument("--text-key", default="text", help="JSON/Parquet field that holds the document text")
    e.add_argument("--output", default="tokenizer_eval", help="directory for eval.md, eval.json and eval.png")
    return p


def _build(args: argparse.Namespace) -> None:
    from zhtw.tokenizer.build import BuildConfig, build

    cfg = BuildConfig(
        base=args.base,
        corpus=list(args.corpus),
        output=args.output,
        vocab_size=args.vocab_size,
        new_tokens=args.new_tokens,
        max_token_chars=args.max_token_chars,
        text_key=args.text_key,
        sample_mb=args.sample_mb,
        heldout_mb=args.heldout_mb,
        candidate_factor=args.candidate_factor,
        prune_rounds=args.prune_rounds,
        selection=args.selection,
        split_by_script=args.split_by_script,
        seed=args.seed,
        character_coverage=args.character_coverage,
        max_piece_length=args.max_piece_length,
        zh_only=not args.all_scripts,
        num_threads=args.workers,
        verify=not args.no_verify,
        keep_candidates=args.keep_candidates,
        overwrite=args.overwrite,
        progress=not args.quiet,
        verbose=args.verbose,
    )
    result = build(cfg, log=_say)
    _say(f"tokenizer: {result.output} (metadata {result.output / 'zhtw_tokenizer.json'})")


def _verify(args: argparse.Namespace) -> None:
    from zhtw.tokenizer.backends import backend_for_dir

    _say(backend_for_dir(args.directory).verify_cli(args.directory, args.text, args.base))


def _eval(args: argparse.Namespace) -> None:
    from zhtw.tokenizer.evaluate import evaluate, markdown, write_report

    result = evaluate(args.tokenizers, args.text, text_key=args.text_key)
    paths = write_report(result, args.output)
    _say(markdown(result))
    _say(f"wrote {paths['markdown']}, {paths['json']}, {paths['png']}")


COMMANDS = {"build": _build, "verify": _verify, "eval": _eval}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `zhtw-tok`: 0 done, 1 refused (one line with the fix), 2 usage, 130 interrupted."""
    from zhtw.tokenizer.errors import UsageError

    return run_main(
        lambda args: f"{PROG} {args.command}", _parser(), lambda args: COMMANDS[args.command](args), argv,
        usage_errors=(UsageError,),
        interrupted="; rerun the same command (nothing is left half-written).",
    )


if __name__ == "__main__":
    raise SystemExit(main())
