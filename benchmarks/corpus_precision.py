"""Corpus-stage precision: the default pipeline's drop decisions against documents labelled by hand.

`benchmarks/data/corpus_labels.jsonl` holds 304 real documents from ../shared/data (Common Crawl
pages in CCNet format, Simplified web text, train-pool and eval excerpts of native zh-TW text,
paragraphs that a crawl pipeline found duplicated, and the WARC/WET files), each with a keep/drop
label and a reason decided by reading the document (see benchmarks/data/README.md). Labels name
only a file and a line or record, so the documents themselves are read from ../shared/data.

This script runs the real `zhtw-corpus run` (default config, --keep-dropped) on those documents and
reports, overall and per reason:

* precision of a pipeline drop reason: the share of the documents it dropped that are labelled drop;
* recall of a label reason: the share of the documents labelled so that the pipeline drops (for
  any reason), and the pipeline reasons it used;
* the share of the kept text (characters) that is native Traditional (origin = native).

    python benchmarks/corpus_precision.py --shared ../shared/data
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from zhtw.corpus.config import CorpusConfig
from zhtw.corpus.pipeline import open_output, plan_run, run_local

HERE = Path(__file__).resolve().parent
DEFAULT_LABELS = HERE / "data" / "corpus_labels.jsonl"
WARC_FILES = (".warc.gz", ".warc.wet.gz")


def load_labels(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _rows(shared: Path, rel: str) -> list[Any]:
    """A JSONL(.gz) file's rows; the duplicated-paragraph file holds Python list literals."""
    with gzip.open(shared / rel, "rt", encoding="utf-8") as f:
        if "duplicated_paragraphs" in rel:
            return [ast.literal_eval(line) for line in f]
        return [json.loads(line) for line in f]


def _as_record(row: Any, label: dict[str, Any]) -> dict[str, Any]:
    """The row as the pipeline should read it, with the label's id (CCNet keeps raw_content and title)."""
    if isinstance(row, list):  # [url, paragraph, count]
        return {"id": label["id"], "text": row[1], "url": row[0]}
    return {**row, "id": label["id"]}


def build_input(labels: list[dict[str, Any]], shared: Path, out: Path) -> None:
    """One JSONL of the labelled line-based documents, plus copies of the labelled WARC/WET files."""
    out.mkdir(parents=True)
    cache: dict[str, list[Any]] = {}
    with open(out / "labelled.jsonl", "w", encoding="utf-8") as f:
        for label in labels:
            if label["file"].endswith(WARC_FILES):
                continue
            rows = cache.setdefault(label["file"], _rows(shared, label["file"]))
            row = rows[int(label["ref"].split(":", 1)[1])]
            f.write(json.dumps(_as_record(row, label), ensure_ascii=False) + "\n")
    for rel in sorted({lab["file"] for lab in labels if lab["file"].endswith(WARC_FILES)}):
        shutil.copyfile(shared / rel, out / Path(rel).name)


def run_pipeline(inputs: Path, output: Path, workers: int) -> dict[str, Any]:
    cfg = CorpusConfig()
    cfg.output.keep_dropped = True
    plan = plan_run([str(inputs)], output, cfg, workers=workers)
    with open_output(plan):
        return run_local(plan, progress=False, echo=lambda _: None)


def _records(folder: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            records.extend(json.loads(line) for line in f)
    return records


def verdicts(output: Path) -> tuple[dict[str, str | None], dict[str, dict[str, Any]]]:
    """id -> pipeline drop reason (None when kept), and the kept records by id."""
    kept = {r["id"]: r for r in _records(output / "shards")}
    dropped = {r["id"]: r["drop_reason"] for r in _records(output / "dropped")}
    return {**{i: None for i in kept}, **dropped}, kept


def label_id(label: dict[str, Any]) -> str:
    return label["ref"].split(":", 1)[1] if label["ref"].startswith("record:") else label["id"]


def measure(
    labels: list[dict[str, Any]], verdict: dict[str, str | None], kept: dict[str, Any]
) -> dict[str, Any]:
    """Precision/recall of drops overall and per reason, and the native share of kept text."""
    pairs = [(lab, verdict.get(label_id(lab), "missing")) for lab in labels]
    missing = [lab["id"] for lab, v in pairs if v == "missing"]
    tp = sum(lab["label"] == "drop" and v is not None for lab, v in pairs)
    fp = sum(lab["label"] == "keep" and v is not None for lab, v in pairs)
    fn = sum(lab["label"] == "drop" and v is None for lab, v in pairs)
    tn = sum(lab["label"] == "keep" and v is None for lab, v in pairs)
    by_pipeline: dict[str, Counter[str]] = defaultdict(Counter)
    by_label: dict[str, Counter[str]] = defaultdict(Counter)
    for lab, v in pairs:
        if v is not None:
            by_pipeline[v][lab["reason"] or "keep"] += 1
        if lab["label"] == "drop":
            by_label[lab["reason"]][v or "kept"] += 1
    chars = Counter()
    for rec in kept.values():
        chars[rec.get("origin") or "none"] += len(rec["text"])
    return {
        "documents": len(labels),
        "missing": missing,
        "confusion": {"true_drop": tp, "false_drop": fp, "missed_drop": fn, "true_keep": tn},
        "overall": {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)},
        "pipeline_reasons": {
            r: {
                "dropped": sum(c.values()),
                "precision": _ratio(sum(c.values()) - c["keep"], sum(c.values())),
                "labels": dict(c.most_common()),
            }
            for r, c in sorted(by_pipeline.items())
        },
        "label_reasons": {
            r: {
                "labelled": sum(c.values()),
                "recall": _ratio(sum(c.values()) - c["kept"], sum(c.values())),
                "pipeline": dict(c.most_common()),
            }
            for r, c in sorted(by_label.items())
        },
        "kept_characters_by_origin": dict(chars.most_common()),
        "kept_native_fraction": _ratio(chars["native"], sum(chars.values())),
        "disagreements": [
            {
                "id": lab["id"],
                "label": lab["label"],
                "reason": lab["reason"],
                "pipeline": v,
                "note": lab["note"],
            }
            for lab, v in pairs
            if (lab["label"] == "drop") != (v is not None)
        ],
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def format_table(m: dict[str, Any]) -> str:
    c, o = m["confusion"], m["overall"]
    lines = [
        f"labelled documents: {m['documents']} (missing from the run: {len(m['missing'])})",
        f"drops: precision {o['precision']}  recall {o['recall']}  "
        f"(true drops {c['true_drop']}, false drops {c['false_drop']}, missed {c['missed_drop']}, "
        f"true keeps {c['true_keep']})",
        "",
        f"{'pipeline reason':<24}{'dropped':>8}{'precision':>11}  labels of what it dropped",
    ]
    for r, v in m["pipeline_reasons"].items():
        labels = ", ".join(f"{k}={n}" for k, n in v["labels"].items())
        lines.append(f"{r:<24}{v['dropped']:>8}{v['precision']!s:>11}  {labels}")
    lines += ["", f"{'label reason':<24}{'labelled':>8}{'recall':>11}  pipeline verdicts"]
    for r, v in m["label_reasons"].items():
        verdict = ", ".join(f"{k}={n}" for k, n in v["pipeline"].items())
        lines.append(f"{r:<24}{v['labelled']:>8}{v['recall']!s:>11}  {verdict}")
    chars = ", ".join(f"{k}={n}" for k, n in m["kept_characters_by_origin"].items())
    lines += ["", f"kept text native Traditional: {m['kept_native_fraction']} of characters ({chars})"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(HERE.parents[0].parent / "shared" / "data"))
    ap.add_argument("--labels", default=str(DEFAULT_LABELS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", default="build/benchmarks/corpus_precision.json")
    args = ap.parse_args()
    shared = Path(args.shared)
    if not shared.is_dir():
        raise SystemExit(f"shared data not found at {shared}: pass --shared PATH")
    labels = load_labels(Path(args.labels))
    with tempfile.TemporaryDirectory(prefix="zhtw-precision-") as tmp:
        build_input(labels, shared, Path(tmp) / "in")
        run_pipeline(Path(tmp) / "in", Path(tmp) / "out", args.workers)
        verdict, kept = verdicts(Path(tmp) / "out")
    m = measure(labels, verdict, kept)
    print(format_table(m))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\njson: {args.json}")


if __name__ == "__main__":
    main()
