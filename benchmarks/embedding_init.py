"""How much each embedding initialisation disturbs English and how well it starts on zh-TW.

Extends stories260K's 512-piece tokenizer with a few thousand zh-TW pieces built from corpus/train
(`zhtw-tok build`), then prepares the model with each `--init` of `zhtw-pretrain prepare` and, as the peer,
transformers' own `resize_token_embeddings(rows)` default (`mean_resizing=True`), and measures:

* English KL: per-token KL(P_orig || P_ext) in nats between the original and the extended model's next-token
  distributions on hand-written English (TinyStories-style, the model's domain, plus some other prose).
  P_ext is the full distribution over all rows of the extended model (new pieces and pad rows included) and
  P_orig gives the new ids probability 0. This is the only finite direction (KL(P_ext || P_orig) is infinite as
  soon as a new id gets mass), and it is exactly what a user pays: E_orig[log p - log q] is the expected rise of
  the English loss. Every English token is an old id and old rows are bit-identical, so the logits of old ids
  are unchanged and the whole divergence is the probability mass m that the new rows take: KL = E[-log(1 - m)].
  The table also shows that mass (mean and max) and the KL after renormalising over the old ids (0 = the
  relative order and odds of the old ids did not move).
* zh-TW loss: mean next-token cross-entropy (nats/token and nats/character) of the extended model on held-out
  corpus/eval text tokenised with the extended tokenizer (the same tokens for every init, so per-token losses
  compare directly). The original model with its own tokenizer (bytes) is shown per character for reference.

    .venv/bin/python benchmarks/embedding_init.py --shared ../shared/data     # about a minute on 2 cores

Prints a table and writes build/benchmarks/embedding_init.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
import transformers
from transformers import AutoModelForCausalLM

from zhtw.pretrain.prepare import INITS, prepare_model, rows_for
from zhtw.tokenizer.build import BuildConfig, build

REPO = Path(__file__).resolve().parents[1]
EVAL_FILES = (
    "wiki_drcd",
    "legal_mojlaw",
    "tech_rustbook_opencc",
    "classical_tangshi",
)  # zh-TW held-out files
TRANSFORMERS_DEFAULT = "transformers-default"

# Hand-written English: TinyStories-style (stories260K's training domain) and a few lines of other prose.
ENGLISH = [
    "Once upon a time, there was a little dog named Max. Max liked to run in the big green park. One day, he "
    "found a red ball under a tree. He was very happy and played with the ball all day.",
    "Lily and her mom went to the store. Lily wanted a big apple, but the apples were too high. Her mom lifted "
    "her up and she picked the biggest one. They went home and ate the apple together.",
    "Tom had a small boat. He took it to the pond and watched it float. A duck swam next to the boat and said, "
    '"Can I play too?" Tom smiled and said, "Yes, you can be my friend."',
    "One day, a little bird could not fly. It was sad and cold. A kind girl named Sue saw the bird. She gave it "
    "some water and a warm blanket. Soon the bird felt better and flew high in the sky.",
    "Ben liked to build tall towers with his blocks. His sister Anna wanted to help. At first Ben said no, but "
    "then he saw that two friends can build a bigger tower. They built the tallest tower in the house.",
    "The sun was hot and the flowers were thirsty. A little girl took her blue watering can and gave every "
    "flower a drink. The flowers grew tall and pretty, and the girl was proud.",
    "Sam was scared of the dark. His dad gave him a small lamp shaped like a star. When the room was dark, the "
    "star made a soft light, and Sam was not scared anymore. He slept well and had happy dreams.",
    "A big bear lived in the forest. He was hungry, so he looked for honey. He found a tree full of bees. The "
    "bees were angry, and the bear ran away. He learned to ask before he takes something.",
    "Mia had a new pair of shoes. They were shiny and pink. She wanted to jump in the mud, but her mom said the "
    "shoes would get dirty. Mia waited until the sun dried the mud, and then she danced outside.",
    "Once upon a time, a cat and a mouse were friends. They shared cheese and milk every day. One night, a big "
    "storm came, and they hid under the bed together until the rain stopped.",
    "Tim wanted to help his grandma in the garden. He dug small holes and she put seeds in them. Every day Tim "
    "gave the seeds water. After many days, little green plants came out of the ground.",
    "The little train went up the hill. It was slow and tired, but it did not stop. When it got to the top, all "
    "the children cheered. The train was happy that it tried its best.",
    "The weather was cold this morning, so we wore our warm coats and walked to school together.",
    "Please remember to close the window before you leave, because the rain may come in tonight.",
    "The committee will meet again next week to discuss the budget and the plans for the new library.",
    "Water boils at one hundred degrees Celsius at sea level, but at a lower temperature on a high mountain.",
]


def _read_docs(path: Path, max_chars: int) -> list[str]:
    """The first documents of a file up to `max_chars` characters in all (the last one cut to fit)."""
    docs, total = [], 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line).get("text", "").strip()[: max_chars - total]
            if text:
                docs.append(text)
                total += len(text)
            if total >= max_chars:
                break
    return docs


def _chunks(ids: list[int], bos: int, length: int) -> list[list[int]]:
    """BOS + the document, cut into windows of at most `length` tokens (each window starts with BOS)."""
    body = length - 1
    return [[bos, *ids[i : i + body]] for i in range(0, len(ids), body)]


@torch.no_grad()
def _english_kl(orig: Any, ext: Any, seqs: list[list[int]], n_old: int) -> dict[str, float]:
    """KL(P_orig || P_ext) per predicted token, new-id mass, and KL after renormalising over the old ids."""
    kls, masses, kl_renorm, n = 0.0, [], 0.0, 0
    for ids in seqs:
        x = torch.tensor([ids])
        lp = torch.log_softmax(orig(x).logits[0].double(), dim=-1)  # [S, n_old]
        lq = torch.log_softmax(ext(x).logits[0].double(), dim=-1)  # [S, rows]
        lq_old = lq[:, :n_old]
        p = lp.exp()
        kls += (p * (lp - lq_old)).sum().item()
        mass = 1.0 - lq_old.exp().sum(dim=-1)
        masses += mass.clamp_min(0).tolist()
        lq_renorm = lq_old - torch.logsumexp(lq_old, dim=-1, keepdim=True)
        kl_renorm += (p * (lp - lq_renorm)).sum().item()
        n += len(ids)
    return {
        "kl_nats_per_token": kls / n,
        "new_mass_mean": sum(masses) / len(masses),
        "new_mass_max": max(masses),
        "kl_renormalised_old_ids": kl_renorm / n,
        "positions": n,
    }


@torch.no_grad()
def _loss(
    model: Any, windows: list[list[int]], new_ids: tuple[int, int] | None
) -> tuple[float, int, float, int]:
    """Summed next-token cross-entropy (nats) and predicted tokens; with `new_ids` also the cross-entropy of the
    targets that are new pieces under a softmax over the new ids only (how well the init ranks new pieces
    among themselves, whatever mass it gives them) and their count."""
    total, count, within, n_within = 0.0, 0, 0.0, 0
    for ids in windows:
        if len(ids) < 2:
            continue
        x = torch.tensor([ids])
        logits = model(x).logits[0, :-1].double()
        target = x[0, 1:]
        total += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        count += len(ids) - 1
        if new_ids is not None:
            lo, hi = new_ids
            is_new = (target >= lo) & (target < hi)
            if is_new.any():
                sub = logits[is_new][:, lo:hi]
                within += torch.nn.functional.cross_entropy(sub, target[is_new] - lo, reduction="sum").item()
                n_within += int(is_new.sum())
    return total, count, within, n_within


def _zh_losses(
    model: Any,
    eval_windows: dict[str, list[list[int]]],
    chars: dict[str, int],
    new_ids: tuple[int, int] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tot, cnt, ch, win, nwin = 0.0, 0, 0, 0.0, 0
    for name, windows in eval_windows.items():
        s, c, w, nw = _loss(model, windows, new_ids)
        out[name] = {"nats_per_token": s / c, "nats_per_char": s / chars[name], "tokens": c}
        if new_ids is not None:
            out[name]["new_target_share"] = nw / c
            out[name]["within_new_nats"] = w / max(nw, 1)
        tot, cnt, ch, win, nwin = tot + s, cnt + c, ch + chars[name], win + w, nwin + nw
    out["all"] = {"nats_per_token": tot / cnt, "nats_per_char": tot / ch, "tokens": cnt}
    if new_ids is not None:
        out["all"]["new_target_share"] = nwin / cnt
        out["all"]["within_new_nats"] = win / max(nwin, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"), help="path to ../shared/data")
    ap.add_argument("--vocab-size", type=int, default=8192, help="extended tokenizer size (512 base pieces)")
    ap.add_argument(
        "--sample-mb", type=float, default=16.0, help="MB of corpus/train sampled for the tokenizer"
    )
    ap.add_argument("--pad-to-multiple-of", type=int, default=64)
    ap.add_argument("--eval-chars", type=int, default=12000, help="characters of each held-out zh-TW file")
    ap.add_argument("--work", default=str(REPO / "build/benchmarks/embedding_init_work"))
    ap.add_argument("--output", default=str(REPO / "build/benchmarks/embedding_init.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)

    shared = Path(args.shared)
    base_dir = shared / "models/stories260K"
    work = Path(args.work)
    tok_dir = work / f"tokenizer_{args.vocab_size}"
    t0 = time.perf_counter()
    res = build(
        BuildConfig(
            base=str(base_dir),
            corpus=[str(shared / "corpus/train")],
            output=str(tok_dir),
            vocab_size=args.vocab_size,
            sample_mb=args.sample_mb,
            heldout_mb=0.5,
            progress=False,
        ),
        log=lambda m: None,
    )
    tok_meta = res.metadata
    print(
        f"tokenizer: {tok_meta['base_vocab_size']} base + {tok_meta['num_added']:,} zh-TW pieces "
        f"({tok_meta['added_counts']}) in {time.perf_counter() - t0:.0f} s"
    )
    n_old, n_tok = tok_meta["base_vocab_size"], tok_meta["vocab_size"]
    rows = rows_for(n_tok, args.pad_to_multiple_of)

    base_sp = spm.SentencePieceProcessor(model_file=str(base_dir / "tokenizer.model"))
    ext_sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    english = [[base_sp.bos_id(), *base_sp.encode(t)] for t in ENGLISH]
    assert english == [[ext_sp.bos_id(), *ext_sp.encode(t)] for t in ENGLISH], "English ids changed"
    max_len = 512  # stories260K's max_position_embeddings
    eval_windows, chars, orig_windows = {}, {}, {}
    for name in EVAL_FILES:
        docs = _read_docs(shared / f"corpus/eval/{name}.jsonl.gz", args.eval_chars)
        chars[name] = sum(len(d) for d in docs)
        eval_windows[name] = [w for d in docs for w in _chunks(ext_sp.encode(d), ext_sp.bos_id(), max_len)]
        orig_windows[name] = [w for d in docs for w in _chunks(base_sp.encode(d), base_sp.bos_id(), max_len)]

    orig = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    models: dict[str, Any] = {}
    prep_seconds: dict[str, float] = {}
    for init in INITS:
        out = work / f"prepared_{args.vocab_size}_{init}"
        meta = prepare_model(base_dir, tok_dir, out, init=init, pad_to_multiple_of=args.pad_to_multiple_of,
                             overwrite=True, log=lambda m: None)  # fmt: skip
        prep_seconds[init] = meta["seconds"]
        models[init] = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    peer = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    peer.resize_token_embeddings(rows)  # transformers' default: mean_resizing=True
    models[TRANSFORMERS_DEFAULT] = peer

    results: dict[str, Any] = {}
    for name, model in models.items():
        assert model.get_input_embeddings().weight.shape[0] == rows
        results[name] = {
            "english": _english_kl(orig, model, english, n_old),
            "zh": _zh_losses(model, eval_windows, chars, (n_old, n_tok)),
        }
        print(f"measured {name} ({time.perf_counter() - t0:.0f} s)")
    reference = _zh_losses(orig, orig_windows, chars, None)

    ms, td, rnd = results["mean-subtoken"], results[TRANSFORMERS_DEFAULT], results["random"]
    targets = {
        "mean_subtoken_kl_le_0.01": ms["english"]["kl_nats_per_token"] <= 0.01,
        "mean_subtoken_kl_below_transformers_default": ms["english"]["kl_nats_per_token"]
        < td["english"]["kl_nats_per_token"],
        "mean_subtoken_zh_loss_below_random": ms["zh"]["all"]["nats_per_token"]
        < rnd["zh"]["all"]["nats_per_token"],
    }

    head = (
        "| init | English KL (nats/token) | new-id mass mean / max | KL renormalised | zh-TW loss (nats/token) "
        "| zh-TW nats/char | new targets: loss within new ids |"
    )
    print("\n" + head + "\n|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        e, z = r["english"], r["zh"]["all"]
        print(
            f"| {name} | {e['kl_nats_per_token']:.2e} | {e['new_mass_mean']:.2e} / {e['new_mass_max']:.2e} | "
            f"{e['kl_renormalised_old_ids']:.1e} | {z['nats_per_token']:.3f} | {z['nats_per_char']:.3f} | "
            f"{z['within_new_nats']:.3f} |"
        )
    print(f"| original (512 pieces, bytes) | - | - | - | {reference['all']['nats_per_token']:.3f} | "
          f"{reference['all']['nats_per_char']:.3f} | - |")  # fmt: skip
    z = results["mean-subtoken"]["zh"]["all"]
    print(f"(uniform over the {n_tok - n_old:,} new ids: {math.log(n_tok - n_old):.3f} nats; "
          f"{z['new_target_share']:.0%} of zh-TW targets are new pieces)")  # fmt: skip
    print("\nzh-TW loss per held-out file (nats/token):")
    print("| init | " + " | ".join(EVAL_FILES) + " |\n|---|" + "---:|" * len(EVAL_FILES))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r['zh'][f]['nats_per_token']:.3f}" for f in EVAL_FILES) + " |")
    print("\ntargets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))

    report = {
        "base_model": str(base_dir.resolve()),
        "tokenizer": {
            "dir": str(tok_dir.resolve()),
            "vocab_size": n_tok,
            "base_vocab_size": n_old,
            "num_added": tok_meta["num_added"],
            "added_counts": tok_meta["added_counts"],
            "sample_mb": args.sample_mb,
        },  # fmt: skip
        "embedding_rows": rows,
        "english": {"texts": len(ENGLISH), "predicted_positions": sum(len(s) for s in english)},
        "zh_eval": {name: {"chars": chars[name]} for name in EVAL_FILES},
        "kl_definition": "KL(P_orig || P_ext) per token, nats; P_ext over all extended rows, P_orig(new ids) = 0",
        "results": results,
        "original_model_zh_reference": reference,
        "prepare_seconds": prep_seconds,
        "targets": targets,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },  # fmt: skip
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
