"""`zhtw-tok eval`: compression of one or more tokenizers on text files, as Markdown, JSON and a PNG chart.

Per tokenizer and file: characters per token, tokens per 1,000 Han characters, the share of byte-fallback
tokens (for byte-level BPE: tokens that are not whole UTF-8 characters), and how many of the tokenizer's new
pieces (pieces the reference tokenizer, the first one named, lacks) were never used. Any mix of formats is
measured side by side: each tokenizer encodes through its backend (sentencepiece for SentencePiece models,
which `zhtw-tok verify` shows equals the HF ids; the HF tokenizer.json for byte-level BPE).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from zhtw.common.errors import OutputError
from zhtw.common.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text, show_path
from zhtw.tokenizer.charclass import count_han
from zhtw.tokenizer.errors import TokenizerStageError
from zhtw.tokenizer.spmodel import BYTE, check_loads, check_pieces, find_model_file, load_proto
from zhtw.tokenizer.textfiles import read_texts


@dataclass
class Named:
    """A tokenizer to evaluate: display name, model file and processor."""

    name: str
    model_path: Path
    encode: Callable[[list[str]], list[list[int]]]
    pieces: list[str]
    is_byte: np.ndarray


def parse_named(spec: str) -> tuple[str, str | None]:
    """`NAME=PATH` names a tokenizer in the report; a bare PATH is named after its directory."""
    name, sep, path = spec.partition("=")
    if sep and name and not Path(spec).exists():
        return path, name
    return spec, None


def load_named(path: str | Path, name: str | None = None, num_threads: int = 0) -> Named:
    """A tokenizer to measure; a damaged model file is refused by name before any text is read."""
    from zhtw.tokenizer.backends import backend_for_base

    p = Path(path).expanduser()
    backend = backend_for_base(p)
    if backend.name != "sentencepiece":
        return _load_other(p, backend, name)
    model = find_model_file(path)
    proto = load_proto(model)
    check_pieces(proto, show_path(model))
    check_loads(proto, show_path(model))
    label = name or (Path(path).name if Path(path).is_dir() else model.parent.name)
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    return Named(
        name=label,
        model_path=model,
        encode=lambda batch: sp.encode(batch, num_threads=num_threads),
        pieces=[p.piece for p in proto.pieces],
        is_byte=np.array([p.type == BYTE for p in proto.pieces], dtype=bool),
    )


def _load_other(path: Path, backend: Any, name: str | None) -> Named:
    """A tokenizer of another backend (byte-level BPE): its encoder, tokens and partial-character tokens."""
    directory = path if path.is_dir() else path.parent
    pieces = backend.tokens(directory)
    return Named(
        name=name or directory.name,
        model_path=directory,
        encode=backend.encoder(directory),
        pieces=pieces,
        is_byte=np.array([_partial_character(p) for p in pieces], dtype=bool),
    )


def _partial_character(token: str) -> bool:
    """A byte-level token that is not whole UTF-8 characters (the byte-level analogue of a byte fallback)."""
    from zhtw.tokenizer.bytelevel import token_bytes

    try:
        token_bytes(token).decode("utf-8")
    except (UnicodeDecodeError, KeyError):
        return True
    return False


def _label(path: str) -> str:
    name = Path(path).name
    for suffix in (".jsonl.gz", ".jsonl", ".json.gz", ".parquet", ".txt.gz", ".txt", ".py", ".md"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _unique_names(tokenizers: Sequence[Named]) -> None:
    seen: dict[str, int] = {}
    for t in tokenizers:
        if t.name in seen:
            seen[t.name] += 1
            t.name = f"{t.name}-{seen[t.name]}"
        else:
            seen[t.name] = 1


def text_file_documents(path: str, text_key: str) -> list[str]:
    """The documents of one text file; one with nothing to measure is refused (a 0.000 row would mislead)."""
    try:
        texts = [t for t in read_texts(path, text_key) if t]
    except UnicodeDecodeError as e:
        raise TokenizerStageError(
            f"--text {show_path(path)} is not UTF-8 text ({e.reason}); convert it first."
        ) from e
    if not texts:
        raise TokenizerStageError(
            f"--text {show_path(path)} holds no text to measure (empty, unreadable or no {text_key!r} "
            "field); "
            "give a file with documents or drop it."
        )
    return texts


def evaluate(
    tokenizer_paths: Sequence[str], text_paths: Sequence[str], *, text_key: str = "text", num_threads: int = 0
) -> dict[str, Any]:
    """Measure every tokenizer on every text file; the first tokenizer is the reference for 'new pieces'."""
    toks = [load_named(path, name, num_threads) for path, name in map(parse_named, tokenizer_paths)]
    _unique_names(toks)
    reference = set(toks[0].pieces)
    new_ids = {t.name: np.array([i for i, p in enumerate(t.pieces) if p not in reference], dtype=np.int64) for t in toks}
    used_anywhere = {t.name: np.zeros(len(t.pieces), dtype=bool) for t in toks}
    rows = []
    for path in text_paths:
        texts = text_file_documents(path, text_key)
        chars = sum(len(x) for x in texts)
        han = sum(count_han(x) for x in texts)
        for t in toks:
            counts = np.zeros(len(t.pieces), dtype=np.int64)
            for i in range(0, len(texts), 256):
                for ids in t.encode(texts[i : i + 256]):
                    if ids:
                        counts += np.bincount(ids, minlength=len(counts))
            tokens = int(counts.sum())
            used_anywhere[t.name] |= counts > 0
            new = new_ids[t.name]
            rows.append(
                {
                    "file": _label(path),
                    "path": show_path(path),
                    "tokenizer": t.name,
                    "vocab_size": len(t.pieces),
                    "documents": len(texts),
                    "characters": chars,
                    "han_characters": han,
                    "tokens": tokens,
                    "chars_per_token": chars / tokens if tokens else 0.0,
                    "tokens_per_1000_han": 1000.0 * tokens / han if han else None,
                    "byte_fallback_share": float(counts[t.is_byte].sum() / tokens) if tokens else 0.0,
                    "new_pieces": int(len(new)),
                    "new_pieces_unused": int((counts[new] == 0).sum()) if len(new) else 0,
                }
            )
    summary = {
        t.name: {
            "path": show_path(t.model_path),
            "vocab_size": len(t.pieces),
            "new_pieces": int(len(new_ids[t.name])),
            "new_pieces_unused_in_all_files": int((~used_anywhere[t.name][new_ids[t.name]]).sum()),
        }
        for t in toks
    }
    return {"reference": toks[0].name, "tokenizers": summary, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| file | tokenizer | vocab | chars/token | tokens per 1k Han | byte-fallback share | new pieces unused |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        per_han = f"{r['tokens_per_1000_han']:.0f}" if r["tokens_per_1000_han"] is not None else "-"
        unused = f"{r['new_pieces_unused']:,} / {r['new_pieces']:,}" if r["new_pieces"] else "-"
        lines.append(
            f"| {r['file']} | {r['tokenizer']} | {r['vocab_size']:,} | {r['chars_per_token']:.3f} | {per_han} | "
            f"{100 * r['byte_fallback_share']:.1f}% | {unused} |"
        )
    return "\n".join(lines) + "\n"


def bar_chart(result: dict[str, Any], path: Path) -> None:
    """Grouped bars of characters per token, one group per file (written atomically)."""
    buf = io.BytesIO()
    _draw(result, buf)
    atomic_write_bytes(path, buf.getvalue())


def _draw(result: dict[str, Any], out: io.BytesIO) -> None:
    """Grouped bars of characters per token, one group per file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = list(dict.fromkeys(r["file"] for r in result["rows"]))
    names = list(result["tokenizers"])
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(files) * max(1, len(names)) / 2), 4.5))
    for k, name in enumerate(names):
        vals = [next(r["chars_per_token"] for r in result["rows"] if r["file"] == f and r["tokenizer"] == name) for f in files]
        ax.bar(np.arange(len(files)) + k * width, vals, width, label=name)
    ax.set_xticks(np.arange(len(files)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels(files, rotation=20, ha="right")
    ax.set_ylabel("characters per token (higher is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)


def write_report(result: dict[str, Any], output: str | Path) -> dict[str, Path]:
    """eval.json, eval.md and eval.png in `output` (only these three names are written, each atomically)."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--output {show_path(out)} exists and is not a directory; choose another path.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output directory {show_path(out)}: {e.strerror}.") from e
    paths = {"json": out / "eval.json", "markdown": out / "eval.md", "png": out / "eval.png"}
    atomic_write_json(paths["json"], result)
    atomic_write_text(paths["markdown"], markdown(result))
    bar_chart(result, paths["png"])
    return paths
