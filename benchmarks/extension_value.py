"""Does extending the vocabulary pay off on a base that knows Chinese? Bits per character, arm by arm.

On zh-tiny (a 14M Llama that learned zh-TW through Llama-2's tokenizer), with the same training text and the
same number of training characters for every arm:

1. `base`: base tokenizer, no extension, LoRA continued pretraining;
2. `mean-subtoken`, 3. `random`, 4. `distill` (and `mean` at step 0 only): an extension of `--new-pieces`
   pieces from `zhtw-tok build` on the train pool, prepared with that `--init`, then LoRA + the new rows;
6. `distill + 10% English`: as 4, but 10% of the training characters are English docstrings of other modules
   (REPLAY_MODULES), mixed block by block in the order weighted `data_files` use (`mixture_schedule`).

Measured with `zhtw-pretrain eval`'s functions: bits per character on held-out zh-TW (wiki_drcd, legal_mojlaw,
tech_rustbook_opencc) and on English docstrings of Python's standard library (modules: ENGLISH_MODULES), the
English KL to the base per token (over identically tokenised docstrings), chars per token and greedy
generation chars/s, at step 0 and after training. Training is one pass of a small local loop (peft LoRA r=16 on
every linear layer plus `trainable_token_indices` for the new rows of input and output matrices), the same code
for every arm: the product's `zhtw-pretrain train` needs a prepared (extended) model, which arm 1 has not.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/extension_value.py --shared ../shared/data   # ~13 min, 1 core

Prints a table and writes build/benchmarks/extension_value/results.json and benchmarks/results/extension_value.png.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import inspect
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from zhtw.pretrain.evaluate import (
    EvalSettings,
    bits_per_character,
    english_kl,
    generation_speed,
    load_model,
    read_documents,
)
from zhtw.pretrain.prepare import prepare_model

REPO = Path(__file__).resolve().parents[1]
ZH_FILES = ("wiki_drcd", "legal_mojlaw", "tech_rustbook_opencc")
TRAIN_FILES = ("ey_gazette", "msdocs_zhtw", "hongloumeng", "gutenberg_classics_slice")
# held-out English: docstrings of modules picked for being far from what zh-tiny's training docstrings stressed
ENGLISH_MODULES = ("fractions", "statistics", "textwrap", "difflib", "heapq", "bisect", "shlex", "calendar")
# English replay text: docstrings of other modules than the held-out ones
REPLAY_MODULES = (
    "json",
    "collections",
    "itertools",
    "functools",
    "string",
    "argparse",
    "pathlib",
    "logging",
    "datetime",
    "random",
    "csv",
    "typing",
    "dataclasses",
    "subprocess",
    "threading",
    "urllib.parse",
)
REPLAY = "distill + 10% English"
# arm -> (--init or None for the base tokenizer, share of English replay or None: step 0 only)
ARMS: dict[str, tuple[str | None, float | None]] = {
    "base": (None, 0.0), "mean-subtoken": ("mean-subtoken", 0.0), "random": ("random", 0.0),
    "mean": ("mean", None), "distill": ("distill", 0.0), REPLAY: ("distill", 0.1),
}  # fmt: skip


def docstrings(modules: tuple[str, ...]) -> list[str]:
    """Docstrings (over 80 characters) of the public functions and classes of the modules, in a fixed order."""
    docs = []
    for name in modules:
        mod = importlib.import_module(name)
        for _, obj in inspect.getmembers(mod):
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == name:
                doc = inspect.getdoc(obj)
                if doc and len(doc) > 80:
                    docs.append(doc)
    return docs


def english_docs(path: Path) -> Path:
    """The held-out English (docstrings of ENGLISH_MODULES) as JSONL."""
    docs = docstrings(ENGLISH_MODULES)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def training_text(shared: Path, chars: int) -> list[str]:
    """The same characters for every arm: an equal share of each train-pool file, whole documents cut to fit."""
    out: list[str] = []
    share = chars // len(TRAIN_FILES)
    for name in TRAIN_FILES:
        got = 0
        with gzip.open(shared / f"corpus/train/{name}.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                text = json.loads(line)["text"][: share - got]
                out.append(text)
                got += len(text)
                if got >= share:
                    break
    return out


def build_tokenizer(shared: Path, out: Path, new_pieces: int) -> Path:
    from zhtw.tokenizer.cli import main as tok_main

    vocab = 32000 + new_pieces
    tok_main(["build", "--base", str(shared / "models/zh-tiny"), "--corpus", str(shared / "corpus/train"),
              "--output", str(out), "--vocab-size", str(vocab), "--sample-mb", "12", "--heldout-mb", "1",
              "--num-threads", "1", "--quiet"])  # fmt: skip
    return out


def measure(
    model: Any, tok: Any, texts: dict[str, list[str]], base: tuple[Any, Any], s: EvalSettings
) -> dict:
    out: dict[str, Any] = {n: bits_per_character(model, tok, d, s) for n, d in texts.items()}
    out["english_kl"] = english_kl(base, (model, tok), texts["english"], s)
    zh_bits = sum(out[n]["bits_per_char"] * out[n]["chars"] for n in ZH_FILES)
    out["zh_bits_per_char"] = zh_bits / sum(out[n]["chars"] for n in ZH_FILES)
    out["zh_chars_per_token"] = sum(out[n]["chars"] for n in ZH_FILES) / sum(
        out[n]["tokens"] for n in ZH_FILES
    )
    return out


def _blocks(tok: Any, docs: list[str], block: int) -> torch.Tensor:
    ids: list[int] = []
    for d in docs:
        ids += [tok.bos_token_id, *tok.encode(d, add_special_tokens=False), tok.eos_token_id]
    n = len(ids) // block
    return torch.tensor(ids[: n * block]).view(n, block)


def _mixed(tok: Any, sources: list[list[str]], weights: list[float], block: int) -> torch.Tensor:
    """The blocks of every source, drawn in the order of `mixture_schedule` (what weighted data_files do)."""
    from zhtw.pretrain.data import mixture_schedule

    blocks = [_blocks(tok, docs, block) for docs in sources]
    schedule = mixture_schedule([len(b) for b in blocks], weights)
    taken = [0] * len(blocks)
    rows = []
    for s in schedule.tolist():
        rows.append(blocks[s][taken[s] % len(blocks[s])])
        taken[s] += 1
    return torch.stack(rows)


def train_arm(
    model: Any,
    tok: Any,
    n_base: int,
    sources: list[list[str]],
    weights: list[float],
    args: argparse.Namespace,
) -> tuple[Any, dict]:
    """One pass over the training text: LoRA on every linear layer, plus the new rows when there are any."""
    from peft import LoraConfig, get_peft_model

    rows = model.get_input_embeddings().weight.shape[0]
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    new_ids = list(range(n_base, rows))
    extra = {"trainable_token_indices": {"embed_tokens": new_ids, "lm_head": new_ids}} if new_ids else {}
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, **extra))
    data = _mixed(tok, sources, weights, args.block)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data), generator=g)
    opt = torch.optim.AdamW(
        [p for p in peft_model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0
    )
    peft_model.train()
    t0, losses = time.perf_counter(), []
    for i in range(0, len(order), args.batch):
        batch = data[order[i : i + args.batch]]
        loss = peft_model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    merged = peft_model.merge_and_unload().eval()
    stats = {"tokens": int(data.numel()), "steps": len(losses), "seconds": time.perf_counter() - t0}
    stats.update(first_loss=losses[0], last_loss=sum(losses[-5:]) / min(5, len(losses)))
    return merged, stats


def _row(name: str, r: dict, base0: dict) -> str:
    after = r.get("trained")
    cells = [
        name,
        f"{r['step0']['zh_bits_per_char']:.3f}",
        f"{r['step0']['zh_bits_per_char'] / base0['zh_bits_per_char']:.3f}×",
        f"{after['zh_bits_per_char']:.3f}" if after else "–",
        f"{r['step0']['english']['bits_per_char']:.3f}",
        f"{after['english']['bits_per_char']:.3f}" if after else "–",
        _kl(r["step0"]["english_kl"]),
        f"{r['step0']['zh_chars_per_token']:.3f}",
        f"{r['generation']['chars_per_second']:.1f}",
        f"{after_gen['chars_per_second']:.1f}" if (after_gen := r.get("trained_generation")) else "–",
    ]
    return "| " + " | ".join(cells) + " |"


def _kl(k: dict) -> str:
    if k["kl_nats_per_token"] is None:
        return "–"
    return f"{k['kl_nats_per_token']:.2e} ({k['compared_documents']}/{k['documents']} docs)"


def table(results: dict) -> str:
    head = ("| arm | zh bits/char step 0 | vs base | zh bits/char trained | en bits/char step 0 | en bits/char "
            "trained | English KL step 0 (nats/tok) | zh chars/token | generation chars/s step 0 | trained |")  # fmt: skip
    lines = [head, "|---|" + "---:|" * 9]
    base0 = results["arms"]["base"]["step0"]
    for name, r in results["arms"].items():
        lines.append(_row(name, r, base0))
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    chars = results["train_chars"]
    for name, r in results["arms"].items():
        if r.get("trained"):
            ax.plot(
                [0, chars],
                [r["step0"]["zh_bits_per_char"], r["trained"]["zh_bits_per_char"]],
                "o-",
                label=name,
            )
    ax.set_xlabel("training characters")
    ax.set_ylabel("held-out zh-TW bits per character")
    ax.set_title("zh-tiny: extension arms at equal training characters")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "build/benchmarks/extension_value")
    p.add_argument("--new-pieces", type=int, default=4032, help="pieces added to Llama-2's 32,000")
    p.add_argument(
        "--train-chars", type=int, default=100_000, help="training characters, the same for every arm"
    )
    p.add_argument("--eval-chars", type=int, default=3000, help="characters per held-out file")
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    base_dir = args.shared / "models/zh-tiny"
    tok_dir = build_tokenizer(args.shared, args.out / "tok", args.new_pieces)
    s = EvalSettings(context=256, stride=192, max_chars=args.eval_chars, generation_chars=100, progress=False)
    texts = {n: read_documents(args.shared / f"corpus/eval/{n}.jsonl.gz", s.max_chars) for n in ZH_FILES}
    texts["english"] = read_documents(english_docs(args.out / "english.jsonl"), 2 * s.max_chars)
    docs = training_text(args.shared, args.train_chars)
    replay_docs = training_text(args.shared, int(args.train_chars * 0.9))
    english, replay_en = docstrings(REPLAY_MODULES), []
    while sum(map(len, replay_en)) < args.train_chars * 0.1 and english:
        replay_en.append(english.pop(0)[: int(args.train_chars * 0.1) - sum(map(len, replay_en))])

    base = load_model(base_dir, "cpu")
    results: dict[str, Any] = {"arms": {}, "train_chars": sum(map(len, docs))}
    results["settings"] = {k: str(v) for k, v in vars(args).items()} | {"english_modules": ENGLISH_MODULES}
    for arm, (init, replay) in ARMS.items():
        t0 = time.perf_counter()
        if init is None:
            model, tok = load_model(base_dir, "cpu")
            prep_s = 0.0
        else:
            prep = args.out / f"prepared_{init}"
            prepare_model(base_dir, tok_dir, prep, init=init, log=lambda m: None)
            prep_s = time.perf_counter() - t0
            model, tok = load_model(prep, "cpu")
        r: dict[str, Any] = {"prepare_seconds": prep_s, "step0": measure(model, tok, texts, base, s)}
        r["generation"] = generation_speed(model, tok, s.generation_chars)
        if replay is not None:
            sources, weights = ([replay_docs, replay_en], [0.9, 0.1]) if replay else ([docs], [1.0])
            trained, r["training"] = train_arm(model, tok, 32000, sources, weights, args)
            r["training"]["chars"] = sum(len(d) for src in sources for d in src)
            r["trained"] = measure(trained, tok, texts, base, s)
            r["trained_generation"] = generation_speed(trained, tok, s.generation_chars)
        results["arms"][arm] = r
        print(f"{arm}: done in {time.perf_counter() - t0:.0f} s", flush=True)

    results["seconds"] = time.perf_counter() - t_start
    results["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    plot(results, REPO / "benchmarks/results/extension_value.png")
    print(table(results))
    print(f"training characters per arm: {results['train_chars']:,}; total {results['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
