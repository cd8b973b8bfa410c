"""Tokenizer quality benchmark (issues 3 and 9): zhtw-tok build on SentencePiece and byte-level BPE bases.

Llama-2 part (issue 3): builds from <shared>/corpus/train with the default total of 61,440 pieces (timed),
builds in the same run the naive merge of the same trained vocabulary at the same total (new pieces of any
script, score 0; `naive`), and the naive merge of a vocabulary trained with SentencePiece's default settings
as Chinese-LLaMA did (`naive-spdefault`), evaluates Llama-2, ours, both naive merges and Chinese-LLaMA-2 on
each file of <shared>/corpus/eval, counts how many lines of the Python standard library tokenise differently
from Llama-2, and checks sentencepiece = HF slow = HF fast ids on every eval document.

Byte-level part (issue 9): extends Llama-3 by 8k and 32k tokens and Qwen2 by 32k tokens with the real
`zhtw.tokenizer.build.build` on the train pool (never eval), each build timed (verification included). Greedy
merge learning is deterministic, so +16k is taken as the first 16k learned merges of the +32k build, but only
after the +8k prefix of that build gave a tokenizer.json identical to the separate +8k build (otherwise +16k
is built too). Per extension: chars per token on every eval file, the English/code identity count (Python
stdlib lines holding no character a new merge may join, base ids = extension ids), and on every eval document
HF fast ids = the independent tiktoken reference (`reference_encoder`) and decode(encode(text)) = text.

Prints the tables and the targets, writes JSON (`<out>/tokenizer_quality.json`).

    .venv/bin/python benchmarks/tokenizer_quality.py [--shared ../shared/data] [--out build/benchmarks]
        [--num-threads 1] [--sample-mb MB] [--max-token-chars K] [--skip-llama2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import sentencepiece as spm

from zhtw.tokenizer.build import CANDIDATES, DEFAULT_VOCAB_SIZE, BuildConfig, build, library_versions
from zhtw.tokenizer.evaluate import evaluate, markdown
from zhtw.tokenizer.merge import naive_merge
from zhtw.tokenizer.spmodel import load_base, load_proto
from zhtw.tokenizer.textfiles import read_texts
from zhtw.tokenizer.train import TrainSettings, sample_corpus, train_candidates

TRAD_FILES = ("wiki_drcd", "legal_mojlaw", "classical_tangshi", "tech_rustbook_opencc")
BUILT = (("llama3", 32768), ("llama3", 8192), ("qwen2", 32768))  # byte-level builds, each by `build`
CHECKED_PREFIX = ("llama3", 8192)  # a separate build that must equal the prefix of the +32k build
PREFIXES = (("llama3", 16384),)  # taken from the +32k build once the check above holds
TARGET_CPT = {"wiki_drcd": 1.45, "legal_mojlaw": 1.95}  # Llama-3 + at most 32,768 new tokens
MIN_ENGLISH_LINES = 20_000
SAMPLE_MB = 256.0  # byte-level builds: zhtw-tok build's default


def log(message: str) -> None:
    print("  " + message, file=sys.stderr, flush=True)


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


def llama2_part(args: argparse.Namespace, shared: Path, out: Path, eval_files: list[str]) -> dict[str, Any]:
    """The issue-3 benchmark, unchanged: Llama-2 + zhtw vs naive merges vs Chinese-LLaMA-2."""
    base_model = shared / "tokenizers/llama2/tokenizer.model"
    peer = shared / "tokenizers/chinese-llama2"
    ours, naive = out / "tokenizer_quality/zhtw", out / "tokenizer_quality/naive"
    naive_sp = out / "tokenizer_quality/naive-spdefault"

    t0 = time.perf_counter()
    result = build(
        BuildConfig(base=str(base_model), corpus=[str(shared / "corpus/train")], output=str(ours),
                    vocab_size=args.vocab_size, keep_candidates=True, progress=False,
                    num_threads=args.num_threads),
        log=log,
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

    ev = evaluate([str(base_model), str(ours), str(naive), str(naive_sp), str(peer)], eval_files,
                  num_threads=args.num_threads)
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
    return {
        "eval": ev,
        "summary": summary,
        "build_metadata": {k: result.metadata[k] for k in ("corpus", "training", "selection")},
        "num_added": result.metadata["num_added"],
    }


# --- byte-level BPE (issue 9) ---------------------------------------------------------------------------


def size_label(n_new: int) -> str:
    """8192 -> '+8k', 29440 -> '+29440' (names are unique: they are also directory names)."""
    return f"+{n_new // 1024}k" if n_new % 1024 == 0 else f"+{n_new}"


def build_bytelevel(
    args: argparse.Namespace, shared: Path, work: Path, base: str, n_new: int
) -> dict[str, Any]:
    """One byte-level extension built by the real `zhtw-tok build` code on the train pool, timed."""
    name = base + size_label(n_new)
    t0 = time.perf_counter()
    result = build(
        BuildConfig(base=str(shared / "tokenizers" / base), corpus=[str(shared / "corpus/train")],
                    output=str(work / name), new_tokens=n_new, sample_mb=args.sample_mb,
                    max_token_chars=args.max_token_chars, num_threads=args.num_threads, progress=False),
        log=log,
    )
    meta = result.metadata
    return {
        "name": name, "base": base, "new_tokens": meta["num_added"], "path": str(work / name),
        "build_seconds": round(time.perf_counter() - t0, 1), "derived_from": None,
        "metadata": {k: meta[k] for k in ("vocab_size", "base_vocab_size", "corpus", "training", "verify")},
    }


def learned_merges(directory: Path) -> list[tuple[str, str]]:
    """A byte-level build's learned merges in learned order: per new token (id order), one split into earlier
    tokens (`extend` recomputes every split, so any one of them rebuilds the same tokenizer.json)."""
    meta = json.loads((directory / "zhtw_tokenizer.json").read_text(encoding="utf-8"))
    data = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    first_split: dict[str, tuple[str, str]] = {}
    for m in data["model"]["merges"][int(meta["base_merges"]) :]:
        a, b = m.split(" ") if isinstance(m, str) else m
        first_split.setdefault(a + b, (a, b))
    new = sorted((i, t) for t, i in data["model"]["vocab"].items() if i >= int(meta["base_vocab_size"]))
    return [first_split[t] for _, t in new]


def prefix_tokenizer(shared: Path, full: dict[str, Any], n_new: int, output: Path) -> Path:
    """The tokenizer a build of `n_new` tokens would give, if learning is deterministic: the first `n_new`
    learned merges of the larger build `full`, written by the same `extend` + `write_hf` as a build."""
    from zhtw.tokenizer import bytelevel

    base = bytelevel.load_base(shared / "tokenizers" / full["base"])
    merges = learned_merges(Path(full["path"]))[:n_new]
    bytelevel.write_hf(output, bytelevel.extend(base, merges), base.path)
    return output


def check_prefix(shared: Path, work: Path, full: dict[str, Any], separate: dict[str, Any]) -> dict[str, Any]:
    """Whether the separate build's tokenizer.json equals (byte for byte) the prefix of the larger build."""
    derived = prefix_tokenizer(shared, full, separate["new_tokens"], work / (separate["name"] + "-prefix"))
    built = Path(separate["path"]) / "tokenizer.json"
    same = (derived / "tokenizer.json").read_bytes() == built.read_bytes()
    return {"built": separate["name"], "prefix_of": full["name"], "identical_tokenizer_json": same}


def derived_entry(shared: Path, work: Path, full: dict[str, Any], n_new: int) -> dict[str, Any]:
    name = full["base"] + size_label(n_new)
    path = prefix_tokenizer(shared, full, n_new, work / name)
    return {"name": name, "base": full["base"], "new_tokens": n_new, "path": str(path), "build_seconds": None,
            "derived_from": full["name"], "metadata": {}}


def english_code_lines() -> tuple[list[str], int]:
    """Stdlib lines no new merge can touch (no CJK character or punctuation), and how many were left out."""
    from zhtw.tokenizer.bytelevel import is_allowed_char

    lines = stdlib_lines()
    kept = [x for x in lines if not any(map(is_allowed_char, x))]
    return kept, len(lines) - len(kept)


def identity(shared: Path, ext: dict[str, Any], lines: list[str]) -> dict[str, int]:
    """Lines the extension (as transformers loads it) tokenises exactly like the base tokenizer.json."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    base = Tokenizer.from_file(str(shared / "tokenizers" / ext["base"] / "tokenizer.json"))
    want = [e.ids for e in base.encode_batch(lines, add_special_tokens=False)]
    got = AutoTokenizer.from_pretrained(ext["path"])(lines, add_special_tokens=False)["input_ids"]
    return {"lines": len(lines), "identical": sum(a == b for a, b in zip(want, got))}


def consistency(ext: dict[str, Any], texts: list[str]) -> dict[str, int]:
    """On every eval document: HF fast ids = tiktoken reference ids, and decode(encode(text)) = the text
    (after the base's normaliser, NFC for Qwen2)."""
    from transformers import AutoTokenizer

    from zhtw.tokenizer.bytelevel import normalize, reference_encoder

    data = json.loads((Path(ext["path"]) / "tokenizer.json").read_text(encoding="utf-8"))
    fast = AutoTokenizer.from_pretrained(ext["path"])
    ids = fast(texts, add_special_tokens=False)["input_ids"]
    ref = reference_encoder(data)
    same_ref = sum(ref.encode(t) == row for t, row in zip(texts, ids))
    round_trip = sum(
        fast.decode(row, clean_up_tokenization_spaces=False) == normalize(data, t)
        for t, row in zip(texts, ids)
    )
    return {"documents": len(texts), "hf_equals_reference": same_ref, "round_trip": round_trip}


def bytelevel_builds(
    args: argparse.Namespace, shared: Path, work: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every byte-level extension: built, or (after the prefix check holds) taken from the +32k build."""
    built = {(b, n): build_bytelevel(args, shared, work, b, n) for b, n in BUILT}
    full = built[(CHECKED_PREFIX[0], max(n for b, n in BUILT if b == CHECKED_PREFIX[0]))]
    check = check_prefix(shared, work, full, built[CHECKED_PREFIX])
    log(f"prefix check: {check}")
    for base, n_new in PREFIXES:
        if check["identical_tokenizer_json"]:
            built[(base, n_new)] = derived_entry(shared, work, full, n_new)
        else:
            built[(base, n_new)] = build_bytelevel(args, shared, work, base, n_new)
    return sorted(built.values(), key=lambda e: (e["base"], e["new_tokens"])), check


def bytelevel_part(
    args: argparse.Namespace, shared: Path, out: Path, eval_files: list[str]
) -> dict[str, Any]:
    """Build, evaluate and check the byte-level extensions; chars per token per family (base first)."""
    work = out / "tokenizer_quality"
    exts, check = bytelevel_builds(args, shared, work)
    evals = {}
    for base in sorted({e["base"] for e in exts}):
        named = [f"{base}={shared / 'tokenizers' / base}"]
        named += [f"{e['name']}={e['path']}" for e in exts if e["base"] == base]
        evals[base] = evaluate(named, eval_files)
        print(markdown(evals[base]))
    lines, left_out = english_code_lines()
    eval_texts = [t for f in eval_files for t in read_texts(f)]
    for e in exts:
        log(f"checking {e['name']}: identity on {len(lines):,} lines, "
            f"HF/reference/round trip on {len(eval_texts):,} docs")
        e["identity"] = identity(shared, e, lines)
        e["consistency"] = consistency(e, eval_texts)
    return {"settings": {"sample_mb": args.sample_mb, "max_token_chars": args.max_token_chars,
                         "num_threads": args.num_threads},
            "prefix_check": check, "extensions": exts, "eval": evals,
            "stdlib_lines_left_out_for_cjk": left_out}


# --- the combined report --------------------------------------------------------------------------------


def cpt_table(l2: dict[str, Any], bl: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Chars per token: file -> tokenizer -> value for every tokenizer of issue 9, and the column order."""
    columns: list[str] = []
    table: dict[str, dict[str, float]] = {}
    if l2:
        renamed = {"llama2": "llama2", "chinese-llama2": "chinese-llama2",
                   "zhtw": "llama2" + size_label(l2["num_added"])}  # fmt: skip
        columns = list(renamed.values())
        for r in l2["eval"]["rows"]:
            if r["tokenizer"] in renamed:
                table.setdefault(r["file"], {})[renamed[r["tokenizer"]]] = r["chars_per_token"]
    for ev in bl["eval"].values():
        columns += list(ev["tokenizers"])
        for r in ev["rows"]:
            table.setdefault(r["file"], {})[r["tokenizer"]] = r["chars_per_token"]
    return columns, table


def print_cpt(columns: list[str], table: dict[str, dict[str, float]]) -> None:
    print("\nChars per token (higher is better), every eval file:\n")
    print("| file | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for file, row in sorted(table.items()):
        print(f"| {file} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")


def print_extensions(l2: dict[str, Any], bl: dict[str, Any]) -> None:
    lines = l2["summary"]["stdlib_lines"] if l2 else 0
    changed = l2["summary"]["stdlib_lines_changed"]["zhtw"] if l2 else 0
    print("\n| extension | new tokens | build time | English/code lines identical to the base | "
          "HF = tiktoken reference (eval docs) | decode round trip (eval docs) |")
    print("|---|---:|---:|---:|---:|---:|")
    if l2:
        agree = l2["summary"]["id_agreement_on_eval_docs"]
        print(f"| llama2{size_label(l2['num_added'])} (SentencePiece) | {l2['num_added']:,} | "
              f"{l2['summary']['build_seconds']:.0f} s | {lines - changed:,} / {lines:,} | "
              f"sentencepiece = HF fast {100 * agree['fast_equal']:.2f}% | - |")
    for e in bl["extensions"]:
        built = f"prefix of {e['derived_from']}" if e["derived_from"] else f"{e['build_seconds']:.0f} s"
        i, c = e["identity"], e["consistency"]
        print(f"| {e['name']} | {e['new_tokens']:,} | {built} | {i['identical']:,} / {i['lines']:,} | "
              f"{c['hf_equals_reference']:,} / {c['documents']:,} | "
              f"{c['round_trip']:,} / {c['documents']:,} |")
    check = bl["prefix_check"]
    verdict = "identical" if check["identical_tokenizer_json"] else "DIFFERENT (so every size was built)"
    print(f"\nPrefix check: the separate {check['built']} build vs the first merges of {check['prefix_of']}: "
          f"tokenizer.json {verdict}.")


def bytelevel_targets(bl: dict[str, Any], table: dict[str, dict[str, float]]) -> dict[str, bool]:
    """The issue-9 targets: Llama-3 + at most 32,768 tokens compresses enough; every extension is exact."""
    exts = bl["extensions"]
    llama3 = [e for e in exts if e["base"] == "llama3" and e["new_tokens"] <= 32768]
    best = max(llama3, key=lambda e: e["new_tokens"])
    targets = {
        f"{best['name']}_{file}_at_least_{cpt}": table[file][best["name"]] >= cpt
        for file, cpt in TARGET_CPT.items()
    }
    targets["english_code_identical_100pct_on_at_least_20000_lines"] = all(
        e["identity"]["lines"] >= MIN_ENGLISH_LINES and e["identity"]["identical"] == e["identity"]["lines"]
        for e in exts
    )
    targets["hf_equals_reference_100pct"] = all(
        e["consistency"]["hf_equals_reference"] == e["consistency"]["documents"] for e in exts
    )
    targets["round_trip_100pct"] = all(
        e["consistency"]["round_trip"] == e["consistency"]["documents"] for e in exts
    )
    targets["every_build_under_10_minutes"] = all(
        e["build_seconds"] < 600 for e in exts if e["build_seconds"] is not None
    )
    return targets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared/data", help="path to the shared data directory")
    ap.add_argument("--out", default="build/benchmarks", help="where tokenizers and the JSON go")
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, help="Llama-2 extension total size")
    ap.add_argument("--num-threads", type=int, default=os.cpu_count() or 1,
                    help="threads for builds and encoding")
    ap.add_argument("--sample-mb", type=float, default=SAMPLE_MB, help="byte-level builds: --sample-mb")
    ap.add_argument("--max-token-chars", type=int, default=None, help="byte-level builds: --max-token-chars")
    ap.add_argument("--skip-llama2", action="store_true", help="only the byte-level part (issue 9)")
    args = ap.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.num_threads))  # tokenizers' thread pool
    shared, out = Path(args.shared), Path(args.out)
    eval_files = sorted(str(p) for p in (shared / "corpus/eval").glob("*.jsonl.gz"))
    shutil.rmtree(out / "tokenizer_quality", ignore_errors=True)

    l2 = {} if args.skip_llama2 else llama2_part(args, shared, out, eval_files)
    bl = bytelevel_part(args, shared, out, eval_files)
    columns, table = cpt_table(l2, bl)
    print_cpt(columns, table)
    print_extensions(l2, bl)
    bl["targets"] = bytelevel_targets(bl, table)
    print("\n| issue-9 target | result |\n|---|---|")
    for k, v in bl["targets"].items():
        print(f"| {k} | {'met' if v else 'MISSED'} |")
    bl["chars_per_token"] = table
    report = {**{k: l2[k] for k in ("eval", "summary", "build_metadata") if k in l2},
              "bytelevel": bl, "versions": library_versions()}
    path = out / "tokenizer_quality.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
