"""Tokenizer quality benchmark (issue 3): zhtw-tok build vs a naive Chinese-LLaMA-style merge vs chinese-llama2.

Builds from <shared>/corpus/train with the default total of 61,440 pieces (timed), builds in the same run
the naive merge of the same trained vocabulary at the same total (new pieces of any script, score 0;
`naive`), and the naive merge of a vocabulary trained with SentencePiece's default settings as Chinese-LLaMA
did (`naive-spdefault`), evaluates Llama-2, ours, both naive merges and Chinese-LLaMA-2 on each file of
<shared>/corpus/eval, counts
how many lines of the Python standard library tokenise differently from Llama-2, and checks
sentencepiece = HF slow = HF fast ids on every eval document. Prints a table and writes JSON.

    .venv/bin/python benchmarks/tokenizer_quality.py [--shared ../shared/data] [--out build/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import sysconfig
import time
from pathlib import Path

import sentencepiece as spm

from zhtw.tokenizer.build import CANDIDATES, DEFAULT_VOCAB_SIZE, BuildConfig, build, library_versions
from zhtw.tokenizer.evaluate import evaluate, markdown
from zhtw.tokenizer.merge import naive_merge
from zhtw.tokenizer.spmodel import load_base, load_proto
from zhtw.tokenizer.textfiles import read_texts
from zhtw.tokenizer.train import TrainSettings, sample_corpus, train_candidates

TRAD_FILES = ("wiki_drcd", "legal_mojlaw", "classical_tangshi", "tech_rustbook_opencc")


def stdlib_lines() -> list[str]:
    """Every non-empty line of the Python standard library's top-level sources: English + code."""
    lines = []
    for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            lines += [x for x in p.read_text(encoding="utf-8").split("\n") if x.strip()]
        except (UnicodeDecodeError, OSError):
            continue
    return lines


def changed_share(base_model: str, model: str, lines: list[str]) -> tuple[int, float]:
    a = spm.SentencePieceProcessor(model_file=base_model).encode(lines)
    b = spm.SentencePieceProcessor(model_file=model).encode(lines)
    n = sum(1 for x, y in zip(a, b) if x != y)
    return n, n / max(1, len(lines))


def agreement(directory: Path, texts: list[str]) -> dict[str, float]:
    """Share of texts on which sentencepiece, HF slow and HF fast (AutoTokenizer) give the same ids."""
    from transformers import AutoTokenizer
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    sp = spm.SentencePieceProcessor(model_file=str(directory / "tokenizer.model"))
    fast = AutoTokenizer.from_pretrained(str(directory))
    slow = SentencePieceBackend.from_pretrained(str(directory))
    ref = sp.encode(texts)
    fast_ids = [e.ids for e in fast.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    same_fast = sum(1 for a, b in zip(ref, fast_ids) if a == b)
    same_slow = sum(1 for t, a in zip(texts, ref) if slow.encode(t, add_special_tokens=False) == a)
    return {"texts": len(texts), "fast_equal": same_fast / len(texts), "slow_equal": same_slow / len(texts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared/data", help="path to the shared data directory")
    ap.add_argument("--out", default="build/benchmarks", help="where tokenizers and the JSON go")
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    base_model = shared / "tokenizers/llama2/tokenizer.model"
    peer = shared / "tokenizers/chinese-llama2"
    eval_files = sorted(str(p) for p in (shared / "corpus/eval").glob("*.jsonl.gz"))
    ours, naive = out / "tokenizer_quality/zhtw", out / "tokenizer_quality/naive"
    naive_sp = out / "tokenizer_quality/naive-spdefault"
    shutil.rmtree(out / "tokenizer_quality", ignore_errors=True)

    t0 = time.perf_counter()
    result = build(
        BuildConfig(base=str(base_model), corpus=[str(shared / "corpus/train")], output=str(ours),
                    vocab_size=args.vocab_size, keep_candidates=True, progress=False),
        log=lambda m: print("  " + m, file=sys.stderr),
    )
    build_seconds = time.perf_counter() - t0

    naive.mkdir(parents=True, exist_ok=True)
    base = load_base(base_model)
    naive_proto = naive_merge(base.proto, load_proto(ours / CANDIDATES), args.vocab_size)
    (naive / "tokenizer.model").write_bytes(naive_proto.SerializeToString())
    # Chinese-LLaMA's recipe: SentencePiece's default splitting (no piece mixes Han with punctuation/digits).
    work = out / "tokenizer_quality/work"
    work.mkdir(parents=True, exist_ok=True)
    sample = sample_corpus([str(shared / "corpus/train")], work, progress=False, log=lambda m: None)
    trained_settings = result.metadata["training"]["trainer"]
    sp_default = train_candidates(
        sample.train_path, TrainSettings(**{**trained_settings, "split_by_unicode_script": True}), log=lambda m: None
    )
    naive_sp.mkdir(parents=True, exist_ok=True)
    (naive_sp / "tokenizer.model").write_bytes(naive_merge(base.proto, sp_default, args.vocab_size).SerializeToString())
    shutil.rmtree(work)

    ev = evaluate([str(base_model), str(ours), str(naive), str(naive_sp), str(peer)], eval_files)
    print(markdown(ev))

    def tokens(name: str, files: tuple[str, ...]) -> int:
        return sum(r["tokens"] for r in ev["rows"] if r["tokenizer"] == name and r["file"] in files)

    def cpt(name: str, file: str) -> float:
        return next(r["chars_per_token"] for r in ev["rows"] if r["tokenizer"] == name and r["file"] == file)

    lines = stdlib_lines()
    ours_changed = changed_share(str(base_model), str(ours / "tokenizer.model"), lines)
    naive_changed = changed_share(str(base_model), str(naive / "tokenizer.model"), lines)
    naive_sp_changed = changed_share(str(base_model), str(naive_sp / "tokenizer.model"), lines)
    eval_texts = [t for f in eval_files for t in read_texts(f)]
    agree = agreement(ours, eval_texts)

    pair = ("wiki_drcd", "legal_mojlaw")
    saving = 1 - tokens("zhtw", pair) / tokens("naive", pair)
    saving_sp = 1 - tokens("zhtw", pair) / tokens("naive-spdefault", pair)
    targets = {
        "chars_per_token_above_chinese_llama2_on_every_traditional_file": all(
            cpt("zhtw", f) > cpt("chinese-llama2", f) for f in TRAD_FILES
        ),
        "at_least_3pct_fewer_tokens_than_naive_same_vocab_on_wiki_plus_legal": saving >= 0.03,
        "at_least_3pct_fewer_tokens_than_naive_spdefault_on_wiki_plus_legal": saving_sp >= 0.03,
        "naive_changes_english": naive_changed[0] > 0 and naive_sp_changed[0] > 0,
        "ours_changes_no_english": ours_changed[0] == 0,
        "sp_slow_fast_ids_agree_100pct": agree["fast_equal"] == 1.0 and agree["slow_equal"] == 1.0,
        "build_under_10_minutes": build_seconds < 600,
    }
    summary = {
        "build_seconds": round(build_seconds, 1),
        "tokens_wiki_plus_legal": {n: tokens(n, pair) for n in ("llama2", "zhtw", "naive", "naive-spdefault", "chinese-llama2")},
        "saving_vs_naive_wiki_plus_legal": round(saving, 4),
        "saving_vs_naive_spdefault_wiki_plus_legal": round(saving_sp, 4),
        "stdlib_lines": len(lines),
        "stdlib_lines_changed": {"zhtw": ours_changed[0], "naive": naive_changed[0], "naive-spdefault": naive_sp_changed[0]},
        "stdlib_lines_changed_share": {"zhtw": ours_changed[1], "naive": naive_changed[1],
                                       "naive-spdefault": naive_sp_changed[1]},
        "id_agreement_on_eval_docs": agree,
        "targets": targets,
    }
    print("| measure | value |\n|---|---|")
    print(f"| build time (2 cores) | {build_seconds:.0f} s |")
    print(f"| tokens on wiki_drcd + legal_mojlaw: zhtw / naive / naive-spdefault / chinese-llama2 | "
          f"{tokens('zhtw', pair):,} / {tokens('naive', pair):,} / {tokens('naive-spdefault', pair):,} / "
          f"{tokens('chinese-llama2', pair):,} |")
    print(f"| fewer tokens than the naive merge of the same vocabulary (wiki + legal) | {100 * saving:.1f}% |")
    print(f"| fewer tokens than the naive merge, SentencePiece default settings (wiki + legal) | {100 * saving_sp:.1f}% |")
    print(f"| stdlib lines tokenised differently from Llama-2 (of {len(lines):,}): zhtw / naive / naive-spdefault | "
          f"{ours_changed[0]:,} ({100 * ours_changed[1]:.2f}%) / {naive_changed[0]:,} ({100 * naive_changed[1]:.2f}%)"
          f" / {naive_sp_changed[0]:,} ({100 * naive_sp_changed[1]:.2f}%) |")
    print(f"| sentencepiece = HF fast / = HF slow on {agree['texts']:,} eval docs | "
          f"{100 * agree['fast_equal']:.2f}% / {100 * agree['slow_equal']:.2f}% |")
    for k, v in targets.items():
        print(f"| target: {k} | {'met' if v else 'MISSED'} |")
    report = {"eval": ev, "summary": summary, "build_metadata": {k: result.metadata[k] for k in ("corpus", "training", "selection")},
              "versions": library_versions()}
    (out / "tokenizer_quality.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out / 'tokenizer_quality.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
