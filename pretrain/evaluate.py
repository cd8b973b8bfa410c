"""`zhtw-pretrain eval`: bits per character, characters per token, generation speed and English drift.

Why bits per character: models with different tokenizers cannot be compared by per-token loss (a token of the
extended tokenizer spans about twice the text of a Llama-2 token), but the total negative log-likelihood of the
same text, divided by its characters, can. Every document is scored as `[BOS] ids` (the EOS token when the
tokenizer has no BOS, as for Qwen2), in windows of `context` tokens that advance by `stride`; each token is
scored once, with at least `context - stride` tokens of left context once the document is longer than a window.

`--reference BASE` adds the mean KL(P_base || P_model) per token, computed only over documents that both
tokenizers split into exactly the same ids (the English that an extension must leave untouched); documents
tokenised differently are counted, never silently dropped.

Usage::

    zhtw-pretrain eval ../shared/data/models/zh-tiny build/prepared --text eval/wiki_drcd.jsonl.gz \\
        --text english.txt --reference ../shared/data/models/zh-tiny --output build/eval
    from zhtw.pretrain.evaluate import evaluate_model, bits_per_character
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zhtw.common.cli import ArgumentParser, add_common_options, add_workers_option, run_main
from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import (
    atomic_write_json,
    atomic_write_text,
    check_disjoint,
    claim_output,
    output_lock,
    show_path,
)

__all__ = [
    "COMMAND",
    "EvalError",
    "EvalSettings",
    "ModelTokenizerMismatchError",
    "PROMPTS",
    "bits_per_character",
    "check_model_matches_tokenizer",
    "english_kl",
    "evaluate",
    "evaluate_model",
    "generation_speed",
    "load_model",
    "main",
    "markdown_table",
    "read_documents",
    "score_windows",
    "text_label",
]

Log = Callable[[str], None]
COMMAND = "zhtw-pretrain eval"
FORMAT = "zhtw-eval/1"
LN2 = math.log(2.0)
# the most embedding rows a model may have beyond its tokenizer (pad rows); more means an extended model
# loaded with its base tokenizer
MAX_PAD_ROWS = 1024
# fixed prompts for the generation-speed measurement: zh-TW and English
PROMPTS: tuple[str, ...] = (
    "臺灣位於東亞，",
    "本法所稱主管機關，",
    "使用者可以在設定中",
    "The function returns",
)


class EvalError(ZhtwError):
    """Anything `zhtw-pretrain eval` refuses or cannot do, with the fix in the message."""


class ModelTokenizerMismatchError(EvalError):
    """The tokenizer in a model directory does not belong to the model's embedding matrix."""


@dataclass(frozen=True)
class EvalSettings:
    """How to score: window length and stride in tokens, tokens per forward batch, text and generation sizes."""

    context: int | None = None  # None: the model's max_position_embeddings, at most 1024
    stride: int | None = None  # None: context // 2
    batch_tokens: int = 4096
    max_chars: int | None = 200_000  # per text file (whole documents until reached); None: all
    generation_chars: int = 200  # 0: skip the generation-speed measurement
    device: str = "auto"
    progress: bool = True


# --------------------------------------------------------------------------------------------------------------
# loading


def read_documents(path: str | Path, max_chars: int | None) -> list[str]:
    """Whole non-empty documents of a text file (corpus formats, or any file as one document) up to max_chars."""
    from zhtw.tokenizer.textfiles import iter_path_texts

    p = Path(path).expanduser()
    if not p.exists():
        raise EvalError(f"{show_path(p)} does not exist; pass an existing text file with --text.")
    docs: list[str] = []
    total = 0
    try:
        for text in iter_path_texts(p):
            if not text.strip():
                continue
            docs.append(text)
            total += len(text)
            if max_chars is not None and total >= max_chars:
                break
    except (UnicodeDecodeError, ValueError) as e:
        raise EvalError(f"{show_path(p)} cannot be read as UTF-8 text ({e}); convert it to UTF-8.") from e
    if not docs:
        raise EvalError(f"{show_path(p)} holds no non-empty document; pass a file with text in it.")
    return docs


def _embedding_rows(model_dir: Path) -> int:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EvalError(
            f"{show_path(model_dir)} is not a Hugging Face model directory ({e}); pass a directory with "
            "config.json and weights (a prepared model, an exported model or a base model)."
        ) from e
    rows = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    if not isinstance(rows, int) or rows < 1:
        raise EvalError(
            f"{show_path(model_dir / 'config.json')} has no vocab_size; it is not a causal LM config."
        )
    return rows


def check_model_matches_tokenizer(model_dir: str | Path, tokenizer_size: int, rows: int) -> None:
    """Refuse a tokenizer that does not belong to the model: more tokens than rows, far fewer tokens than rows
    (an extended model with its base tokenizer), or other than what `zhtw-pretrain prepare` recorded."""
    d = Path(model_dir)
    fix = "put the model's own tokenizer files in its directory (prepare and export copy them there)"
    if tokenizer_size > rows:
        raise ModelTokenizerMismatchError(
            f"{show_path(d)}: the tokenizer has {tokenizer_size:,} tokens but the model only {rows:,} embedding "
            f"rows (an extended tokenizer with the base model?); {fix}."
        )
    if rows - tokenizer_size >= MAX_PAD_ROWS:
        raise ModelTokenizerMismatchError(
            f"{show_path(d)}: the model has {rows:,} embedding rows but the tokenizer only {tokenizer_size:,} tokens "
            f"(the base tokenizer with an extended model?); {fix}."
        )
    prep = d / "zhtw_prepare.json"
    if prep.is_file():
        meta = json.loads(prep.read_text(encoding="utf-8"))
        if meta.get("tokenizer_size") != tokenizer_size:
            raise ModelTokenizerMismatchError(
                f"{show_path(d)}: zhtw_prepare.json records a tokenizer of {meta.get('tokenizer_size')} tokens, "
                f"the directory's tokenizer has {tokenizer_size:,}; {fix}."
            )


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(model_dir: str | Path, device: str = "auto") -> tuple[Any, Any]:
    """Model (eval mode, on `device`) and tokenizer of a directory, after checking that they belong together."""
    from transformers import AutoModelForCausalLM

    from zhtw.pretrain.data import DataError, load_tokenizer

    d = Path(model_dir).expanduser()
    rows = _embedding_rows(d)
    try:
        tok = load_tokenizer(d)
    except DataError as e:
        raise ModelTokenizerMismatchError(str(e)) from e
    check_model_matches_tokenizer(d, len(tok), rows)
    model = AutoModelForCausalLM.from_pretrained(d, dtype="auto")
    model.to(_device(device)).eval()
    actual = model.get_input_embeddings().weight.shape[0]
    if actual != rows:
        raise ModelTokenizerMismatchError(
            f"{show_path(d)}: config.json says {rows:,} rows but the weights hold {actual:,}; the directory is damaged."
        )
    return model, tok


def _start_id(tok: Any) -> int:
    """The token every document starts with: BOS, or EOS (the document separator) when there is no BOS."""
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def _encode(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    start = _start_id(tok)
    return [[start, *tok.encode(t, add_special_tokens=False)] for t in texts]


def _context(model: Any, settings: EvalSettings) -> tuple[int, int]:
    limit = int(getattr(model.config, "max_position_embeddings", 1024) or 1024)
    ctx = settings.context or min(limit, 1024)
    stride = settings.stride or max(1, ctx // 2)
    if ctx < 2 or not 1 <= stride < ctx:
        raise EvalError(
            f"--context must be at least 2 and --stride from 1 to context - 1 (got {ctx}, {stride})."
        )
    return ctx, stride


# --------------------------------------------------------------------------------------------------------------
# scoring


def _windows(n: int, ctx: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, first) windows over a sequence of n ids: inputs ids[start:end]; the targets scored here are
    ids[first:end], so every target 1..n-1 is scored exactly once."""
    end, first = min(ctx, n), 1
    while True:
        yield end - min(ctx, end), end, first
        if end >= n:
            return
        first, end = end, min(end + stride, n)


def _batches(
    items: list[tuple[int, int, int, int]], batch_tokens: int
) -> Iterator[list[tuple[int, int, int, int]]]:
    """Windows grouped by length (longest first) so that a batch holds about batch_tokens padded tokens."""
    ordered = sorted(items, key=lambda w: w[2] - w[1], reverse=True)
    batch: list[tuple[int, int, int, int]] = []
    for w in ordered:
        if batch and (len(batch) + 1) * (batch[0][2] - batch[0][1]) > batch_tokens:
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch


def _hidden_states(model: Any, ids: Any, mask: Any) -> Any:
    """Final hidden states (the output head's input) without materialising full-vocabulary logits."""
    model = (
        model.get_base_model() if hasattr(model, "get_base_model") else model
    )  # a peft model: its LoRA stays on
    body = getattr(model, model.base_model_prefix)
    return body(input_ids=ids, attention_mask=mask).last_hidden_state


def score_windows(
    models: Sequence[Any],
    seqs: Sequence[Sequence[int]],
    ctx: int,
    stride: int,
    batch_tokens: int,
    consume: Callable[[list[Any], Any], None],
    progress: bool = False,
) -> None:
    """Run every model over the windows of every sequence and hand the scored positions to `consume`.

    consume([log-probabilities per model, shape [n, rows]], targets [n]) is called once per window with the
    n positions that window scores, so no full-vocabulary temporary spans more than one window.
    """
    import torch
    from tqdm.auto import tqdm

    items = [
        (d, s, e, f) for d, seq in enumerate(seqs) for s, e, f in _windows(len(seq), ctx, stride) if e - f > 0
    ]
    device = next(models[0].parameters()).device
    bar = tqdm(total=sum(e - f for _, _, e, f in items), unit="tok", disable=not progress, leave=False)
    with torch.no_grad():
        for batch in _batches(items, batch_tokens):
            width = batch[0][2] - batch[0][1]
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, (d, s, e, _) in enumerate(batch):
                ids[row, : e - s] = torch.tensor(seqs[d][s:e])
                mask[row, : e - s] = 1
            hidden = [_hidden_states(m, ids.to(device), mask.to(device)) for m in models]
            for row, (_, s, e, f) in enumerate(batch):
                pos = slice(f - 1 - s, e - 1 - s)  # hidden state at position p predicts the id at p + 1
                targets = ids[row, f - s : e - s]
                logps = [
                    torch.log_softmax(m.get_output_embeddings()(h[row, pos]).float(), dim=-1).cpu()
                    for m, h in zip(models, hidden)
                ]
                consume(logps, targets)
                bar.update(e - f)
    bar.close()


def bits_per_character(
    model: Any, tok: Any, texts: Sequence[str], settings: EvalSettings = EvalSettings()
) -> dict[str, Any]:
    """Total negative log-likelihood of the texts in bits / their characters, plus characters per token."""
    ctx, stride = _context(model, settings)
    seqs = _encode(tok, texts)
    total = [0.0]

    def consume(logps: list[Any], targets: Any) -> None:
        total[0] -= float(logps[0].gather(1, targets[:, None]).sum())

    score_windows([model], seqs, ctx, stride, settings.batch_tokens, consume, settings.progress)
    chars = sum(len(t) for t in texts)
    tokens = sum(len(s) - 1 for s in seqs)
    return {
        "bits_per_char": total[0] / LN2 / chars,
        "chars": chars,
        "tokens": tokens,
        "chars_per_token": chars / max(1, tokens),
        "documents": len(texts),
        "context": ctx,
        "stride": stride,
    }


def english_kl(
    reference: tuple[Any, Any],
    candidate: tuple[Any, Any],
    texts: Sequence[str],
    settings: EvalSettings = EvalSettings(),
) -> dict[str, Any]:
    """Mean KL(P_reference || P_candidate) in nats per token over the texts both tokenizers split identically.

    P_candidate covers all its rows (new pieces and pad rows included); the reference gives the extra rows
    probability 0, so this is exactly the expected rise of the reference-tokenised loss.
    """
    (ref_model, ref_tok), (model, tok) = reference, candidate
    ref_seqs, seqs = _encode(ref_tok, texts), _encode(tok, texts)
    same = [i for i, (a, b) in enumerate(zip(ref_seqs, seqs)) if a == b]
    result: dict[str, Any] = {"documents": len(texts), "compared_documents": len(same)}
    result["skipped_documents"] = {"tokenised differently": len(texts) - len(same)}
    if not same:
        return {**result, "kl_nats_per_token": None, "new_token_mass": None, "tokens": 0}
    ctx, stride = _context(ref_model, settings)
    acc = {"kl": 0.0, "mass": 0.0, "n": 0}
    n_ref = ref_model.get_output_embeddings().weight.shape[0]

    def consume(logps: list[Any], _: Any) -> None:
        p_ref, q = logps
        acc["kl"] += float((p_ref.exp() * (p_ref - q[:, :n_ref])).sum())
        acc["mass"] += float(q[:, n_ref:].exp().sum())
        acc["n"] += p_ref.shape[0]

    score_windows([ref_model, model], [seqs[i] for i in same], ctx, stride, settings.batch_tokens, consume)
    n = max(1, acc["n"])
    return {
        **result,
        "kl_nats_per_token": acc["kl"] / n,
        "new_token_mass": acc["mass"] / n,
        "tokens": acc["n"],
    }


def generation_speed(model: Any, tok: Any, chars: int, prompts: Sequence[str] = PROMPTS) -> dict[str, Any]:
    """Greedy generation of `chars` characters after each prompt (EOS suppressed); characters per second.

    The length is fixed in characters, not tokens, so a tokenizer with longer tokens finishes in fewer steps.
    """
    import torch

    device = next(model.parameters()).device
    made, seconds, steps = 0, 0.0, 0
    for prompt in prompts:
        ids = torch.tensor([_encode(tok, [prompt])[0]], device=device)
        t0 = time.perf_counter()
        # a byte-fallback tokenizer needs up to 4 tokens for one character
        text, n = _generate_chars(model, tok, ids, chars, max_tokens=4 * chars + 16)
        seconds += time.perf_counter() - t0
        made += min(len(text), chars)
        steps += n
    return {"chars_per_second": made / seconds if seconds else None, "chars": made, "tokens": steps,
            "seconds": seconds, "prompts": len(prompts)}  # fmt: skip


def _generate_chars(model: Any, tok: Any, ids: Any, chars: int, max_tokens: int) -> tuple[str, int]:
    """Greedy `generate` until the decoded continuation has `chars` characters (BOS and EOS suppressed)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    prompt_len = ids.shape[1]

    class EnoughChars(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            done = len(tok.decode(input_ids[0, prompt_len:], skip_special_tokens=True)) >= chars
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    suppress = [i for i in {tok.eos_token_id, tok.bos_token_id} if i is not None]
    out = model.generate(
        ids, attention_mask=ids.new_ones(ids.shape), do_sample=False, max_new_tokens=max_tokens,
        suppress_tokens=suppress, stopping_criteria=StoppingCriteriaList([EnoughChars()]),
        pad_token_id=tok.eos_token_id, temperature=None, top_p=None, top_k=None,
    )  # fmt: skip
    new = out[0, prompt_len:]
    return tok.decode(new, skip_special_tokens=True), int(new.shape[0])


# --------------------------------------------------------------------------------------------------------------
# the command


def evaluate_model(
    model: Any,
    tok: Any,
    texts: dict[str, list[str]],
    settings: EvalSettings = EvalSettings(),
    reference: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Every measurement for one loaded model: per text file bits/char (and KL to the reference), generation."""
    files: dict[str, Any] = {}
    for name, docs in texts.items():
        files[name] = bits_per_character(model, tok, docs, settings)
        if reference is not None:
            files[name]["reference_kl"] = english_kl(reference, (model, tok), docs, settings)
    out: dict[str, Any] = {"files": files, "vocab_size": len(tok)}
    out["rows"] = int(model.get_input_embeddings().weight.shape[0])
    if settings.generation_chars > 0:
        out["generation"] = generation_speed(model, tok, settings.generation_chars)
    return out


def evaluate(
    models: Sequence[str | Path],
    text_files: Sequence[str | Path],
    output: str | Path,
    reference: str | Path | None = None,
    settings: EvalSettings = EvalSettings(),
    log: Log = print,
) -> dict[str, Any]:
    """Load each model, measure it on every text file, write eval.json and eval.md to `output`, return the
    result. All inputs are checked (texts readable, tokenizers matching) before the first model is scored."""
    if not models or not text_files:
        raise EvalError("pass at least one MODEL directory and one --text FILE.")
    out = Path(output).expanduser()
    check_disjoint(
        out, [*map(Path, models), *map(Path, text_files), *([Path(reference)] if reference else [])]
    )
    texts = {text_label(p, text_files): read_documents(p, settings.max_chars) for p in text_files}
    for m in [*models, *([reference] if reference else [])]:
        d = Path(m).expanduser()
        check_model_matches_tokenizer(d, _tokenizer_size(d), _embedding_rows(d))
    ref = load_model(reference, settings.device) if reference else None
    result: dict[str, Any] = {"format": FORMAT, "settings": asdict(settings), "texts": {}, "models": {}}
    result["reference"] = str(reference) if reference else None
    result["texts"] = {k: {"documents": len(v), "chars": sum(map(len, v))} for k, v in texts.items()}
    for m in models:
        log(f"evaluating {show_path(m)} ...")
        model, tok = load_model(m, settings.device)
        result["models"][str(m)] = evaluate_model(model, tok, texts, settings, ref)
        del model
    with output_lock(out, command=COMMAND):
        claim_output(out)
        atomic_write_json(out / "eval.json", result)
        atomic_write_text(out / "eval.md", markdown_table(result))
    log(markdown_table(result))
    return result


def _tokenizer_size(d: Path) -> int:
    from zhtw.pretrain.data import DataError, load_tokenizer

    try:
        return len(load_tokenizer(d))
    except DataError as e:
        raise ModelTokenizerMismatchError(str(e)) from e


def text_label(path: str | Path, all_paths: Sequence[str | Path]) -> str:
    """A short name for a text file: its name without corpus extensions (the full path when names collide)."""
    name = Path(path).name
    for ext in (".gz", ".jsonl", ".json", ".parquet", ".txt"):
        name = name.removesuffix(ext)
    others = [Path(p).name for p in all_paths]
    return name if others.count(Path(path).name) == 1 else str(path)


def _num(v: Any, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def markdown_table(result: dict[str, Any]) -> str:
    """One row per model: bits/char and chars/token per text file, KL to the reference, generation chars/s."""
    names = list(result["texts"])
    header = ["model", *(f"{n} bits/char" for n in names), *(f"{n} chars/tok" for n in names)]
    ref = result.get("reference") is not None
    header += [*(["KL to reference (nats/tok, docs compared)"] if ref else []), "generation chars/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for model, r in result["models"].items():
        cells = [show_path(model)]
        cells += [_num(r["files"][n]["bits_per_char"], ".4f") for n in names]
        cells += [_num(r["files"][n]["chars_per_token"], ".3f") for n in names]
        if ref:
            kls = [r["files"][n]["reference_kl"] for n in names]
            compared = sum(k["compared_documents"] for k in kls)
            tokens = sum(k["tokens"] for k in kls)
            kl = sum((k["kl_nats_per_token"] or 0.0) * k["tokens"] for k in kls) / tokens if tokens else None
            cells.append(f"{_num(kl, '.2e')} ({compared}/{sum(k['documents'] for k in kls)})")
        cells.append(_num((r.get("generation") or {}).get("chars_per_second"), ".1f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=COMMAND,
        description="Bits per character and characters per token of each model on each text file, English KL to "
        "a reference model over identically tokenised documents, and greedy generation speed in characters/s. "
        "Writes eval.json and eval.md to --output and prints the table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("models", nargs="+", help="model directories (each with its own tokenizer files)")
    p.add_argument(
        "--text", action="append", required=True, help="text file (jsonl[.gz], parquet, txt); repeat"
    )
    p.add_argument("--output", required=True, help="directory for eval.json and eval.md")
    p.add_argument("--reference", help="model to compute the KL against (the base before extension)")
    p.add_argument("--context", type=int, help="window length in tokens (default: model limit, at most 1024)")
    p.add_argument("--stride", type=int, help="window advance in tokens (default: context / 2)")
    p.add_argument("--batch-tokens", type=int, default=4096, help="padded tokens per forward pass")
    p.add_argument("--max-chars", type=int, default=200_000, help="characters per text file (0: all)")
    p.add_argument("--generation-chars", type=int, default=200, help="characters per prompt; 0 skips it")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--quiet", "-q", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    add_workers_option(p, default=None, help="CPU threads for torch (default: torch's choice)")
    add_common_options(p, quiet=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `zhtw-pretrain eval`: 0 done, 1 refused (one line), 2 usage, 130 interrupted."""
    from zhtw.pretrain.prepare import os_error_message

    return run_main(COMMAND, _parser(), _run, argv, describe_os_error=lambda e: os_error_message(e, "."))


def _run(args: argparse.Namespace) -> None:
    if args.workers:
        import torch

        torch.set_num_threads(args.workers)
    settings = EvalSettings(
        context=args.context, stride=args.stride, batch_tokens=args.batch_tokens,
        max_chars=args.max_chars or None, generation_chars=args.generation_chars, device=args.device,
        progress=not args.quiet,
    )  # fmt: skip
    evaluate(args.models, args.text, args.output, args.reference, settings)
    print(f"evaluation: {show_path(Path(args.output) / 'eval.json')}, {show_path(Path(args.output) / 'eval.md')}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
