"""Rebuild ``mainland_terms.tsv`` from ``mainland_seed.tsv`` by measurement (run by hand).

For every candidate mainland word (Simplified) with its usual Taiwan word:

1. convert it with the pipeline's own converter (s2twp + ``tw_phrase_overrides.tsv``); a
   candidate that conversion already turns into Taiwan usage (软件 -> 軟體) is not kept;
2. count the converted form in real Simplified web text after conversion (``--converted``) and
   in native zh-TW text (``--native``, the train pool), per million characters;
3. keep it when native zh-TW writers (almost) never use it: at most ``--rare-per-million``
   (default 1) in native text, or at most ``--max-native-per-million`` (default 10) and at least
   ``--min-ratio`` (default 40) times more often in converted text (質量: 367 vs 6 per million;
   水平 at 25x and 領導 at 9x, words Taiwan also uses, are not kept).

    python corpus/data/build_mainland_terms.py \
        --converted ../shared/data/corpus/eval/zhcn_web_cc.jsonl.gz \
                    ../shared/data/web/chinesewebtext_cc_2021-43.jsonl.gz \
        --native ../shared/data/corpus/train/*.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from pathlib import Path

from zhtw.corpus.script import Converter, load_phrase_overrides
from zhtw.corpus.text import _trie_pattern

HERE = Path(__file__).parent


def read_texts(paths: list[str]) -> list[str]:
    texts = []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.append(row.get("text") or row.get("raw_content") or "")
    return texts


def read_seed(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            mainland, taiwan = line.split("\t")[:2]
            rows.append((mainland, taiwan))
    return rows


def count_terms(texts: list[str], terms: list[str]) -> tuple[Counter[str], int]:
    import re

    matcher = re.compile(_trie_pattern(sorted(set(terms))))
    counts: Counter[str] = Counter()
    chars = 0
    for text in texts:
        chars += len(text)
        counts.update(matcher.findall(text))
    return counts, chars


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--converted", nargs="+", required=True, help="Simplified JSONL.gz files")
    ap.add_argument("--native", nargs="+", required=True, help="native zh-TW JSONL.gz files")
    ap.add_argument("--rare-per-million", type=float, default=1.0)
    ap.add_argument("--max-native-per-million", type=float, default=10.0)
    ap.add_argument("--min-ratio", type=float, default=40.0)
    ap.add_argument("--out", default=str(HERE / "mainland_terms.tsv"))
    args = ap.parse_args()

    converter = Converter(phrase_overrides=load_phrase_overrides())
    seed = read_seed(HERE / "mainland_seed.tsv")
    forms = {m: converter.convert(m, "simplified")[0] for m, _ in seed}
    converted = [converter.convert(t, "simplified")[0] for t in read_texts(args.converted)]
    conv_counts, conv_chars = count_terms(converted, list(forms.values()))
    native_counts, native_chars = count_terms(read_texts(args.native), list(forms.values()))

    kept, rejected = [], []
    for mainland, taiwan in seed:
        form = forms[mainland]
        conv_pm = 1e6 * conv_counts[form] / conv_chars
        native_pm = 1e6 * native_counts[form] / native_chars
        row = (form, taiwan, mainland, conv_counts[form], conv_pm, native_counts[form], native_pm)
        rare = native_pm <= args.rare_per_million
        skewed = native_pm <= args.max_native_per_million and conv_pm >= args.min_ratio * native_pm
        if form != taiwan and (rare or skewed):
            kept.append(row)
        else:
            rejected.append(row)
    header = (
        "# Mainland-only vocabulary that survives conversion (s2twp + tw_phrase_overrides.tsv), with\n"
        "# its usual Taiwan word. Built by corpus/data/build_mainland_terms.py from mainland_seed.tsv:\n"
        f"# converted text {conv_chars} characters ({', '.join(Path(p).name for p in args.converted)}),\n"
        f"# native zh-TW text {native_chars} characters ({', '.join(Path(p).name for p in args.native)});\n"
        f"# kept when native use <= {args.rare_per_million} per million characters, or <= "
        f"{args.max_native_per_million} and converted use >= {args.min_ratio}x native.\n"
        "# term\ttaiwan\tsimplified\tconverted_count\tconverted_per_million\tnative_count\tnative_per_million\n"
    )
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(header)
        for r in sorted(kept, key=lambda r: (-r[3], r[0])):
            f.write(f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]:.1f}\t{r[5]}\t{r[6]:.2f}\n")
    print(f"kept {len(kept)} terms -> {args.out}")
    for r in sorted(rejected, key=lambda r: -r[6]):
        why = "same as the Taiwan word" if r[0] == r[1] else f"native {r[6]:.2f}/M"
        print(f"rejected {r[2]} -> {r[0]}: {why} (converted {r[3]})")


if __name__ == "__main__":
    main()
