"""The exported model's card (`README.md`), built with huggingface_hub's `ModelCard` / `ModelCardData`.

Why generated: a model on a hub is judged by its card, and every number on it should be the run's own.
Everything comes from the metadata the earlier stages wrote: `zhtw_prepare.json` (base model, vocabulary
sizes), `zhtw_tokenizer.json` (added pieces), the tokenizer report of `zhtw-tok eval` (compression before
and after; measured here on a sample of the training text when there is none), `training_summary.json`
(hyperparameters, losses by step, versions, `loss.png`) and the export's own verification.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import atomic_write_text
from zhtw.pretrain.train_summary import TrainSummary
from zhtw.tokenizer.meta import TokenizerMeta

__all__ = [
    "DEFAULT_LANGUAGES",
    "ModelCardError",
    "ModelIdentity",
    "compression_from_report",
    "measure_compression",
    "model_identity",
    "write_model_card",
]

DEFAULT_LANGUAGES = ["zh", "en"]
MAX_RESULT_ROWS = 40
SAMPLE_CHARS = 200_000


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


class ModelCardError(ZhtwError):
    """The card cannot be written from what was given (e.g. an unreadable tokenizer report)."""


@dataclass(frozen=True)
class ModelIdentity:
    """How the exported model is named in the card and the GGUF file: never someone else's namespace."""

    name: str  # e.g. "Llama-2-7b-hf-zhtw": no owner prefix, so the user publishes it under their own
    basename: str  # the base's name without owner, e.g. "Llama-2-7b-hf"
    base_model: str | None  # the base's hub id (owner/name), None when it is not known
    license: str
    datasets: tuple[str, ...] = ()


def is_hub_id(name: object) -> bool:
    """Whether `name` looks like a hub repository id (owner/name), not a local path."""
    return isinstance(name, str) and bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists()


def base_model_id(prepare: dict[str, Any], given: str | None) -> str | None:
    """The base's hub id: `--base-model-id`, else the `_name_or_path` of the base's own config.json when it
    names a hub repository; never the local folder's name (which says nothing about the model's origin)."""
    if given:
        return given
    config = Path(str(prepare.get("base_model", ""))) / "config.json"
    try:
        name = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return name if is_hub_id(name) else None


def model_identity(
    prepare: dict[str, Any], given_base_id: str | None, license: str, datasets: Sequence[str] = ()
) -> ModelIdentity:
    """The names the card and the GGUF metadata use, computed once from the user's options and the base."""
    base_id = base_model_id(prepare, given_base_id)
    basename = (base_id or Path(str(prepare.get("base_model", "base"))).name).split("/")[-1]
    return ModelIdentity(f"{basename}-zhtw", basename, base_id, license, tuple(datasets))


# --------------------------------------------------------------------------------------------------------------
# vocabulary and compression


def _report_path(prepare: dict[str, Any], given: str | Path | None) -> Path | None:
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            from zhtw.pretrain.export.merge import ExportError

            raise ExportError(
                f"--tokenizer-report {path} does not exist; pass the eval.json of `zhtw-tok eval`."
            )
        return path
    tok_dir = prepare.get("tokenizer_dir")
    if tok_dir:
        for candidate in (Path(tok_dir) / "eval.json", Path(tok_dir) / "eval" / "eval.json"):
            if candidate.is_file():
                return candidate
    return None


def compression_from_report(
    report: dict[str, Any], vocab_size: int, base_vocab_size: int
) -> list[dict[str, Any]]:
    """Rows (file, chars/token before and after) from a `zhtw-tok eval` report, matched by vocabulary size."""
    by_file: dict[str, dict[str, Any]] = {}
    for row in report.get("rows", []):
        entry = by_file.setdefault(row["file"], {"file": row["file"], "characters": row["characters"]})
        if row["vocab_size"] == base_vocab_size and "before" not in entry:
            entry["before"] = row["chars_per_token"]
        elif row["vocab_size"] == vocab_size and "after" not in entry:
            entry["after"] = row["chars_per_token"]
    return [e for e in by_file.values() if "before" in e and "after" in e]


def _sample_texts(paths: Iterable[str], text_key: str, limit: int = SAMPLE_CHARS) -> list[str]:
    from zhtw.tokenizer.textfiles import iter_path_texts

    texts: list[str] = []
    total = 0
    for path in paths:
        if not Path(path).exists():
            continue
        for text in iter_path_texts(path, text_key):
            texts.append(text[:20_000])
            total += len(texts[-1])
            if total >= limit:
                return texts
    return texts


def measure_compression(
    base_model: Path, extended: Path, texts: Sequence[str], label: str
) -> list[dict[str, Any]]:
    """Characters per token of the base model's tokenizer and the extended one on `texts`, each through its
    tokenizer backend (sentencepiece ids for SentencePiece, the HF tokenizer.json for byte-level BPE)."""
    from zhtw.tokenizer.backends import backend_for_base, backend_for_dir
    from zhtw.tokenizer.errors import TokenizerStageError

    if not texts:
        return []
    try:
        before_enc = backend_for_base(base_model).encoder(base_model)
        after_enc = backend_for_dir(extended).encoder(extended)
    except TokenizerStageError:
        return []  # the base directory moved or holds no tokenizer: no measured row, the card says so
    chars = sum(len(t) for t in texts)
    before = sum(len(x) for x in before_enc(list(texts)))
    after = sum(len(x) for x in after_enc(list(texts)))
    return [{"file": label, "characters": chars, "before": chars / before, "after": chars / after}]


def _first_eval_label(final: dict[str, Any]) -> str:
    """'before training' only when the first evaluation really ran at step 0 (a resumed run's may not)."""
    step = final.get("first_eval_step")
    return "before training" if step == 0 else f"at the first evaluation, step {_fmt(step)}"


def _vocabulary_lines(out: Path, tok_meta: dict[str, Any]) -> dict[str, Any]:
    """The tokenizer backend's one-line description and the first added tokens (as text), for the card."""
    from zhtw.tokenizer.backends import backend_for_dir
    from zhtw.tokenizer.errors import TokenizerStageError

    try:
        backend = backend_for_dir(out)
        lines: dict[str, Any] = {"_describe": backend.describe(tok_meta)}
        if "added_pieces" not in tok_meta:
            lines["_added_tokens"] = [_readable(t) for t in backend.tokens(out)[int(tok_meta["base_vocab_size"]) :][:24]]
        return lines
    except (TokenizerStageError, KeyError, ValueError):
        return {}


def _readable(token: str) -> str:
    """A byte-level token as text (its bytes decoded; a partial character shown as �)."""
    from zhtw.tokenizer.bytelevel import token_bytes

    try:
        return token_bytes(token).decode("utf-8", errors="replace")
    except KeyError:
        return token


# --------------------------------------------------------------------------------------------------------------
# tables


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def bits_per_char_rows(table: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows (held-out file, base, prepared at step 0, trained) of the summary's `bits_per_char` table."""
    rows = []
    for name in table.get("files") or {}:
        cells = []
        for stage in ("base", "prepared_step0", "trained"):
            values = table.get(stage) or {}
            cells.append(_fmt(values.get(name)) if name in values else "not measured")
        rows.append((name, *cells))
    return rows


def _mixture_line(data: dict[str, Any]) -> list[str]:
    mixture = data.get("mixture")
    if not mixture:
        return []
    parts = [f"{m['source']} weight {_fmt(m['weight'])} ({100 * m['share']:.1f}% of blocks, "
             f"{_fmt(m['epochs'])} epochs)" for m in mixture]  # fmt: skip
    return ["Weighted mixture: " + "; ".join(parts) + "."]


def loss_by_step(history: Sequence[dict[str, Any]]) -> list[tuple[int, float | None, float | None]]:
    """(step, training loss, evaluation loss) merged by step, at most MAX_RESULT_ROWS rows (last one kept)."""
    steps: dict[int, list[float | None]] = {}
    for h in history:
        if "step" not in h:
            continue
        entry = steps.setdefault(int(h["step"]), [None, None])
        if "loss" in h:
            entry[0] = float(h["loss"])
        if "eval_loss" in h:
            entry[1] = float(h["eval_loss"])
    rows = [(s, v[0], v[1]) for s, v in sorted(steps.items()) if v[0] is not None or v[1] is not None]
    if len(rows) > MAX_RESULT_ROWS:
        stride = -(-len(rows) // MAX_RESULT_ROWS)
        rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
    return rows


def _hyperparameters(summary: TrainSummary) -> list[tuple[str, Any]]:
    opt, args = summary.options, summary.get("training_args", {})
    s2 = summary.get("s2attn", {})
    params = summary.get("parameters", {})
    warmup = args.get("warmup_steps") or args.get("warmup_ratio")
    return [
        ("quantization of the frozen base", summary.get("quantization")),
        (
            "LoRA rank r / alpha / dropout",
            f"{opt.get('lora_r')} / {opt.get('lora_alpha')} / {opt.get('lora_dropout')}",
        ),
        ("LoRA target modules", opt.get("lora_target_modules")),
        ("trainable embeddings", summary.get("trainable_embeddings")),
        ("trained token ids", summary.get("trainable_token_ids")),
        ("trainable norms", opt.get("trainable_norms")),
        ("trainable / total parameters", f"{_fmt(params.get('trainable'))} / {_fmt(params.get('total'))}"),
        ("learning rate", args.get("learning_rate")),
        ("scheduler / warm-up", f"{args.get('lr_scheduler_type')} / {_fmt(warmup)}"),
        ("optimizer / weight decay", f"{args.get('optim')} / {args.get('weight_decay')}"),
        ("max grad norm", args.get("max_grad_norm")),
        (
            "per-device batch × accumulation × devices",
            f"{args.get('per_device_train_batch_size')} × "
            f"{args.get('gradient_accumulation_steps')} × {summary.get('world_size')}",
        ),  # fmt: skip
        ("block size (tokens)", opt.get("block_size")),
        ("tokens per step", summary.get("tokens_per_step")),
        ("steps / epochs", f"{_fmt(summary.get('global_steps'))} / {_fmt(summary.get('epochs'))}"),
        ("tokens seen", summary.get("tokens_seen")),
        (
            "S²-Attn (training only)",
            f"{s2.get('enabled')}, ratio {s2.get('ratio')}, {s2.get('variant')}" if s2 else None,
        ),  # fmt: skip
        ("precision", "bf16" if args.get("bf16") else "fp16" if args.get("fp16") else "fp32"),
        ("seed", args.get("seed")),
        ("training time (s)", (summary.get("time") or {}).get("seconds")),
    ]


# --------------------------------------------------------------------------------------------------------------
# the card


def _card_body(
    name: str,
    prepare: dict[str, Any],
    tok_meta: dict[str, Any],
    summary: TrainSummary | None,
    export_meta: dict[str, Any],
    compression: list[dict[str, Any]],
    compression_source: str,
    has_plot: bool,
    base_label: str,
) -> str:
    added = tok_meta.get("added_pieces") or tok_meta.get("_added_tokens") or []
    n_base, n_tok = prepare.get("base_vocab_size"), prepare.get("tokenizer_size")
    rows = prepare.get("embedding_rows")
    parts = [
        f"# {name}",
        f"A Traditional Chinese (Taiwan) continuation of **{base_label}**, made with "
        "zhtw: the base tokenizer was extended with Traditional Chinese pieces, the "
        "embedding rows of the new pieces were initialised from their sub-pieces, and the model was trained "
        "further on zh-TW text with LoRA (QLoRA when the base was 4-bit) plus the new token rows. The adapter "
        f"has been merged into the full-precision weights ({export_meta['dtype']}); this is a plain "
        "`LlamaForCausalLM` needing no peft.",
        "## Vocabulary extension",
        _table(
            ["", "value"],
            [
                ("base vocabulary", _fmt(n_base)),
                ("extended vocabulary", _fmt(n_tok)),
                ("tokenizer", _fmt(tok_meta.get("_describe"))),
                ("pieces added", _fmt((n_tok or 0) - (n_base or 0))),
                ("embedding rows (padded)", _fmt(rows)),
                ("new-row initialisation", _fmt(prepare.get("init"))),
                ("tied input/output embeddings", _fmt(prepare.get("tie_word_embeddings"))),
            ],
            "lr",
        ),
    ]
    if added:
        parts.append("First added pieces: " + " ".join(f"`{p}`" for p in added[:24]))
    if compression:
        parts += [
            f"Compression (characters per token, higher is better; {compression_source}):",
            _table(
                ["text", "characters", "base", "extended", "ratio"],
                [
                    (
                        r["file"],
                        _fmt(r["characters"]),
                        f"{r['before']:.3f}",
                        f"{r['after']:.3f}",
                        f"{r['after'] / r['before']:.2f}×",
                    )  # fmt: skip
                    for r in compression
                ],
                "lrrrr",
            ),
        ]
    else:
        parts.append("Compression: no tokenizer report and no sample text were available.")

    parts.append("## Training")
    if summary:
        opt = summary.options
        data = summary.get("data") or {}
        parts.append(
            f"Continued pretraining on {_fmt(opt.get('data_files'))} "
            f"({_fmt(data.get('documents'))} documents; {_fmt(data.get('tokens_train'))} training and "
            f"{_fmt(data.get('tokens_eval'))} held-out tokens after packing)."
        )
        parts += _mixture_line(data)
        if summary.bits_per_char:
            parts += [
                "### Bits per character on held-out text (lower is better; comparable across tokenizers)",
                _table(["text", "base model", "prepared, step 0", "trained"],
                       bits_per_char_rows(summary.bits_per_char), "lrrr"),
            ]  # fmt: skip
        parts += ["### Training hyperparameters", _table(["hyperparameter", "value"],
                  [(k, _fmt(v)) for k, v in _hyperparameters(summary)], "lr")]  # fmt: skip
        final = summary.final
        parts += [
            "### Training results",
            _table(
                ["step", "training loss", "evaluation loss"],
                [(s, _fmt(t), _fmt(e)) for s, t, e in loss_by_step(summary.log_history)],
                "rrr",
            ),
            f"Final: training loss {_fmt(final.get('train_loss'))}, evaluation loss {_fmt(final.get('eval_loss'))} "
            f"(perplexity {_fmt(final.get('eval_perplexity'))}; {_fmt(final.get('first_eval_loss'))} "
            f"{_first_eval_label(final)}).",
        ]
        if has_plot:
            parts.append("![training and evaluation loss](loss.png)")
    else:
        parts.append(
            "No `training_summary.json` was found beside the adapter, so no training record is shown."
        )

    check = export_meta.get("verify") or {}
    parts.append("## Export check")
    if check.get("skipped"):
        parts.append("The reload check was skipped (`--verify none`).")
    else:
        parts.append(
            f"Reloaded with `AutoModelForCausalLM` and compared with the adapter model (`PeftModel`) on "
            f"{check.get('texts')} sample texts ({check.get('tokens')} tokens, {check.get('dtype')}): max |Δlogit| "
            f"{_fmt(check.get('max_abs_diff'))} (tolerance {_fmt(check.get('tolerance'))}), top-1 agreement "
            f"{100 * float(check.get('top1_agreement', 0)):.1f}%, no NaN."
        )

    versions = dict((summary.get("versions") if summary else None) or {})
    versions.update({k: v for k, v in (export_meta.get("versions") or {}).items() if v != "not installed"})
    parts += [
        "## Framework versions",
        "\n".join(f"- {k}: {v}" for k, v in versions.items() if v and v != "not installed"),
        "## How to load",
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'tok = AutoTokenizer.from_pretrained("PATH_OR_REPO")\n'
        'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO", dtype="auto")\n'
        'ids = tok("臺灣的夜市", return_tensors="pt")\n'
        "print(tok.decode(model.generate(**ids, max_new_tokens=40)[0]))\n```",
    ]
    gguf_name = export_meta.get("gguf_file")
    if gguf_name:
        parts.append(
            f"llama.cpp / Ollama: `{gguf_name}` holds the same weights and vocabulary "
            f'(`llama-cli -m {gguf_name} -p "臺灣的夜市"`; Ollama: `FROM ./{gguf_name}` in a Modelfile).'
        )
    return "\n\n".join(parts) + "\n"


def write_model_card(
    out: Path,
    prepare: dict[str, Any],
    summary: TrainSummary | None,
    export_meta: dict[str, Any],
    tokenizer_report: str | Path | None = None,
    identity: ModelIdentity | None = None,
    gguf_file: str | None = None,
) -> dict[str, Any]:
    """Write `out/README.md` (and copy the run's loss.png beside it); return what the card reports."""
    from huggingface_hub import ModelCard, ModelCardData

    identity = identity or model_identity(prepare, None, "other")
    base_label = identity.base_model or identity.basename
    tok_meta = TokenizerMeta.read(out).to_dict() if TokenizerMeta.path(out).is_file() else {}
    if tok_meta:
        tok_meta = {**tok_meta, **_vocabulary_lines(out, tok_meta)}
    n_tok, n_base = int(prepare.get("tokenizer_size", 0)), int(prepare.get("base_vocab_size", 0))

    report = _report_path(prepare, tokenizer_report)
    if report is not None:
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelCardError(
                f"the tokenizer report {report} cannot be read ({e}); pass the eval.json that `zhtw-tok eval` "
                "wrote, or leave --tokenizer-report out to measure compression on the training text."
            ) from e
        compression = compression_from_report(data, n_tok, n_base)
        source = f"from the tokenizer report `{report.name}`"
    else:
        compression, source = [], ""
    if not compression:
        opts = summary.options if summary else {}
        texts = _sample_texts(opts.get("data_files") or [], opts.get("text_key") or "text")
        compression = measure_compression(
            Path(str(prepare.get("base_model", ""))), out, texts, "training text sample"
        )
        source = f"measured on {sum(len(t) for t in texts):,} characters of the training text"

    has_plot = False
    if summary and summary.adapter_path:
        plot = Path(summary.adapter_path).parent / (summary.files.get("loss_plot") or "loss.png")
        if plot.is_file():
            shutil.copyfile(plot, out / "loss.png")
            has_plot = True

    name = identity.name
    meta = dict(export_meta, gguf_file=gguf_file)
    data = ModelCardData(
        base_model=identity.base_model,
        library_name="transformers",
        license=identity.license,
        language=DEFAULT_LANGUAGES,
        tags=["llama", "zh-TW", "traditional-chinese", "continued-pretraining", "lora", "zhtw"]
        + (["gguf"] if gguf_file else []),
        datasets=list(identity.datasets) or None,  # as the user named them (--dataset), never file names
        pipeline_tag="text-generation",
        model_name=name,
    )
    body = _card_body(name, prepare, tok_meta, summary, meta, compression, source, has_plot, base_label)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    atomic_write_text(out / "README.md", str(card))  # what ModelCard.save writes, never half-written
    return {
        "path": "README.md",
        "compression": compression,
        "compression_source": source,
        "loss_plot": "loss.png" if has_plot else None,
        "results_rows": len(loss_by_step(summary.log_history if summary else [])),
        "name": identity.name,
        "base_model": identity.base_model,
        "datasets": list(identity.datasets),
    }
