"""Exploring `learn_merges` knobs that `zhtw-tok build` does not expose (source weights, per-document caps).

The issue-9 benchmark with the real build is `benchmarks/tokenizer_quality.py`; this script calls
`balanced_texts` + `learn_merges` + `extend` directly so that settings can be compared before one becomes a
build option. It learns merges on a balanced sample of ../shared/data/corpus/train (never eval), then reports chars
per token on every eval file for the base and the extension, the build time, the English/code identity count
(Python stdlib source lines) and HF = tiktoken-reference agreement on wiki_drcd. Prints a table, writes JSON.

    .venv/bin/python benchmarks/bytelevel_merges.py --base llama3 --new-tokens 32768 --total-chars 30000000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tokenizers import Tokenizer

from zhtw.corpus.textio import iter_texts
from zhtw.tokenizer.bytelevel import extend, load_base, reference_encoder
from zhtw.tokenizer.bytelevel_train import balanced_texts, learn_merges

DATA = Path(os.environ.get("ZHTW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def parse_weights(spec: str | None, files: list[Path]) -> list[float]:
    """'ey_gazette=2,gutenberg_classics_slice=0.5' -> one weight per file (default 1)."""
    given = dict(item.split("=") for item in spec.split(",")) if spec else {}
    return [float(given.get(f.name.split(".")[0], 1.0)) for f in files]


def chars_per_token(tok: Tokenizer, texts: list[str]) -> float:
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    return sum(map(len, texts)) / tokens


def english_lines(limit: int) -> list[str]:
    lines = []
    for path in sorted(Path(os.__file__).parent.glob("*.py")):
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(lines) >= limit:
            break
    return lines[:limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="llama3", choices=["llama3", "qwen2"])
    ap.add_argument("--new-tokens", type=int, default=32768)
    ap.add_argument("--total-chars", type=int, default=30_000_000)
    ap.add_argument("--weights", help="per train file, e.g. ey_gazette=1,gutenberg_classics_slice=0.3")
    ap.add_argument("--per-doc-cap", type=int, help="count a pre-token at most this often per document")
    ap.add_argument("--max-token-chars", type=int, help="longest new token, in characters")
    ap.add_argument("--english-lines", type=int, default=20_000)
    ap.add_argument("--output", default="build/benchmarks/bytelevel_merges.json")
    args = ap.parse_args()

    base_dir = DATA / "tokenizers" / args.base
    base = load_base(base_dir)
    files = sorted((DATA / "corpus" / "train").glob("*.jsonl.gz"))
    weights = parse_weights(args.weights, files)
    t0 = time.perf_counter()
    texts = balanced_texts(files, args.total_chars, weights=weights)
    merges = learn_merges(
        base,
        texts,
        args.new_tokens,
        per_doc_cap=args.per_doc_cap,
        max_token_chars=args.max_token_chars,
        progress=lambda d, n: print(f"  {d}/{n} merges", flush=True) if d % 8192 == 0 else None,
    )
    ext = extend(base, merges)
    build_s = time.perf_counter() - t0
    tok = Tokenizer.from_str(json.dumps(ext.data))

    rows = {}
    for f in sorted((DATA / "corpus" / "eval").glob("*.jsonl.gz")):
        docs = list(iter_texts(f))
        rows[f.name.split(".")[0]] = {
            "base": chars_per_token(base.tokenizer, docs),
            "extended": chars_per_token(tok, docs),
        }
    english = english_lines(args.english_lines)
    same = sum(
        a.ids == b.ids
        for a, b in zip(
            base.tokenizer.encode_batch(english, add_special_tokens=False),
            tok.encode_batch(english, add_special_tokens=False),
        )
    )
    ref = reference_encoder(ext.data)
    wiki = list(iter_texts(DATA / "corpus" / "eval" / "wiki_drcd.jsonl.gz"))
    agree = sum(
        ref.encode(t) == e.ids for t, e in zip(wiki, tok.encode_batch(wiki, add_special_tokens=False))
    )

    print(
        f"\n{args.base} + {ext.added:,} merges (sample {sum(map(len, texts)):,} chars, weights {weights}), "
        f"per-doc cap {args.per_doc_cap}, max chars {args.max_token_chars}, build {build_s:.0f} s"
    )
    print(f"{'eval file':<24}{'base':>8}{'extended':>10}{'ratio':>8}")
    for name, r in rows.items():
        print(f"{name:<24}{r['base']:>8.3f}{r['extended']:>10.3f}{r['extended'] / r['base']:>8.3f}")
    print(
        f"English/code lines identical: {same:,}/{len(english):,}; HF = tiktoken on wiki_drcd: {agree}/{len(wiki)}"
    )
    result = {
        "base": args.base,
        "new_tokens": ext.added,
        "sample_chars": sum(map(len, texts)),
        "weights": dict(zip([f.name for f in files], weights)),
        "build_seconds": build_s,
        "per_doc_cap": args.per_doc_cap,
        "max_token_chars": args.max_token_chars,
        "chars_per_token": rows,
        "english_identical": [same, len(english)],
        "reference_agree": [agree, len(wiki)],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
