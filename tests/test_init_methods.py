"""The registry of initialisation methods: invariants of every method, and what `distill` promises on zh-tiny.

Invariants on tiny 2-layer Llamas built here (tied and untied, float32 and bfloat16); the promises on the real
zh-tiny model (a Llama that learned Chinese through Llama-2's byte-fallback tokenizer) with 200 new pieces: the
most frequent two-character strings of a train-pool sample, split into base ids by the real Llama-2 tokenizer.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from zhtw.pretrain.init_methods import DEFAULT_INIT, INIT_METHODS, INITS, InitError, initialise_new_rows

N_BASE, N_NEW, ROWS = 256, 40, 320  # 24 pad rows


def _tiny(tied: bool, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=N_BASE, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return LlamaForCausalLM(config).to(dtype).eval()


def _subtokens(n: int = N_NEW) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, N_BASE, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]  # fmt: skip


def _rows(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        model.get_input_embeddings().weight.detach().clone(),
        model.get_output_embeddings().weight.detach().clone(),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("init", INITS)
def test_every_method_keeps_old_rows_shapes_dtype_and_tying(
    init: str, tied: bool, dtype: torch.dtype
) -> None:
    model = _tiny(tied, dtype)
    emb0, head0 = _rows(model)
    subtokens = _subtokens() if INIT_METHODS[init].needs_subtokens else [[]] * N_NEW
    assert initialise_new_rows(model, N_BASE, ROWS, subtokens, init) is tied
    emb, head = _rows(model)
    assert emb.shape == head.shape == (ROWS, 64) and emb.dtype == head.dtype == dtype
    assert torch.equal(emb[:N_BASE], emb0) and torch.equal(head[:N_BASE], head0)  # bit-identical
    assert torch.isfinite(emb.float()).all() and torch.isfinite(head.float()).all()
    tied_now = (
        model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    )
    assert tied_now is tied
    assert (
        not torch.equal(emb[N_BASE : N_BASE + N_NEW], emb0.mean(0).to(dtype).expand(N_NEW, -1))
        or init == "mean"
    )
    if init != "random":  # pad rows: the mean base row
        pad = emb[N_BASE + N_NEW :].float()
        torch.testing.assert_close(pad, emb0.float().mean(0).expand_as(pad), rtol=0.01, atol=1e-3)

    again = _tiny(tied, dtype)
    initialise_new_rows(again, N_BASE, ROWS, subtokens, init)
    assert all(torch.equal(a, b) for a, b in zip(_rows(again), (emb, head)))  # seeded: the same rows twice


def test_mean_subtoken_rows_are_the_mean_of_their_subtokens() -> None:
    model = _tiny(tied=False)
    emb0, head0 = _rows(model)
    subtokens = _subtokens()
    initialise_new_rows(model, N_BASE, ROWS, subtokens, "mean-subtoken")
    emb, head = _rows(model)
    for i, ids in enumerate(subtokens):
        torch.testing.assert_close(emb[N_BASE + i], emb0[ids].mean(0), rtol=0, atol=1e-6)
        torch.testing.assert_close(head[N_BASE + i], head0[ids].mean(0), rtol=0, atol=1e-6)


def test_distill_untied_moves_both_rows_and_tied_keeps_mean_subtoken() -> None:
    subtokens = _subtokens()
    ref = _tiny(tied=False)
    initialise_new_rows(ref, N_BASE, ROWS, subtokens, "mean-subtoken")
    model = _tiny(tied=False)
    initialise_new_rows(model, N_BASE, ROWS, subtokens, "distill")
    new = slice(N_BASE, N_BASE + N_NEW)
    for a, b in zip(_rows(model), _rows(ref)):
        assert not torch.allclose(a[new], b[new])
        assert torch.equal(a[N_BASE + N_NEW :], b[N_BASE + N_NEW :])  # pad rows as before
    tied_ref, tied = _tiny(tied=True), _tiny(tied=True)
    initialise_new_rows(tied_ref, N_BASE, ROWS, subtokens, "mean-subtoken")
    initialise_new_rows(tied, N_BASE, ROWS, subtokens, "distill")
    assert torch.equal(_rows(tied)[0], _rows(tied_ref)[0])
    assert not any(p.requires_grad is False for p in model.parameters())  # the model is given back trainable


def test_refusals() -> None:
    with pytest.raises(InitError, match="unknown; choose one of"):
        initialise_new_rows(_tiny(False), N_BASE, ROWS, _subtokens(), "nonsense")
    with pytest.raises(InitError, match="cannot hold"):
        initialise_new_rows(_tiny(False), N_BASE, N_BASE + 10, _subtokens(), "mean")
    with pytest.raises(InitError, match="sub-token ids of every new piece"):
        initialise_new_rows(_tiny(False), N_BASE, ROWS, [[5], []], "distill")
    assert DEFAULT_INIT == "distill" and set(INITS) >= {"distill", "mean-subtoken", "mean", "random"}


# --------------------------------------------------------------------------------------------------------------
# zh-tiny


def _texts(path: Path, limit: int, skip: int = 0) -> list[str]:
    """Whole documents of a JSONL.gz file, after the first `skip` ones, until `limit` characters."""
    out, total = [], 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n < skip:
                continue
            out.append(json.loads(line)["text"])
            total += len(out[-1])
            if total >= limit:
                break
    return out


@pytest.fixture(scope="module")
def zh_tiny(shared_data: Path) -> dict:
    """zh-tiny, its SentencePiece model, 200 frequent two-character pieces (train pool) and their base ids."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    d = shared_data / "models/zh-tiny"
    counts: Counter[str] = Counter()
    docs = _texts(shared_data / "corpus/train/msdocs_zhtw.jsonl.gz", 300_000)
    for text in docs:
        for run in re.findall(r"[\u4e00-\u9fff]+", text):
            counts.update(run[i : i + 2] for i in range(len(run) - 1))
    pieces = [p for p, _ in counts.most_common(200)]
    proto = pb.ModelProto()
    proto.ParseFromString((d / "tokenizer.model").read_bytes())
    proto.normalizer_spec.add_dummy_prefix = False
    raw = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    held = [
        t[:200] for t in _texts(shared_data / "corpus/train/msdocs_zhtw.jsonl.gz", 200_000, skip=len(docs))
    ]
    return {"dir": d, "sp": sp, "pieces": pieces, "subtokens": [raw.encode(p) for p in pieces], "held": held}


def _initialised(zh_tiny: dict, init: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(zh_tiny["dir"]).eval()
    initialise_new_rows(model, 32000, 32000 + 256, zh_tiny["subtokens"], init)
    return model


def _matches(ids: list[int], subtokens: list[list[int]]) -> list[tuple[int, int]]:
    """(position, piece) wherever a piece's base ids occur in ids."""
    found = []
    for k, seq in enumerate(subtokens):
        for i in range(1, len(ids) - len(seq) + 1):
            if ids[i : i + len(seq)] == seq:
                found.append((i, k))
    return found


@pytest.mark.shared_data
@pytest.mark.slow
def test_distill_matches_the_base_on_chinese_and_leaves_english_alone(
    zh_tiny: dict, shared_data: Path
) -> None:
    """Inputs are base ids, so hidden states equal the base's; what differs is the output over the new rows."""
    import inspect
    import textwrap

    torch.set_num_threads(1)
    base = _initialised(zh_tiny, "mean")  # old rows = zh-tiny's own
    sp, subtokens = zh_tiny["sp"], zh_tiny["subtokens"]
    zh_docs = [sp.encode(t)[:160] for t in zh_tiny["held"][:40]]
    en_docs = [sp.encode(inspect.getdoc(o) or "")[:160] for o in (textwrap.wrap, textwrap.dedent, json.dumps)]
    results = {}
    for init in ("mean-subtoken", "distill"):
        model = _initialised(zh_tiny, init)
        err, n, mass = 0.0, 0, 0.0
        with torch.no_grad():
            for ids in zh_docs:
                lp_base = torch.log_softmax(
                    base(input_ids=torch.tensor([[1, *ids]])).logits[0, :, :32000], -1
                )
                lp = torch.log_softmax(model(input_ids=torch.tensor([[1, *ids]])).logits[0], -1)
                for i, k in _matches([1, *ids], subtokens):
                    seq_logp = sum(float(lp_base[i - 1 + j, t]) for j, t in enumerate(subtokens[k]))
                    err += abs(float(lp[i - 1, 32000 + k]) - seq_logp)
                    n += 1
            for ids in en_docs:
                lp = torch.log_softmax(model(input_ids=torch.tensor([[1, *ids]])).logits[0], -1)
                mass += float(lp[:, 32000:].exp().sum(-1).mean()) / len(en_docs)
        results[init] = {"seq_logp_error": err / n, "english_mass": mass, "matches": n}
    assert results["distill"]["matches"] > 100
    # a new piece gets about the base's log-probability of its whole sub-token sequence
    assert results["distill"]["seq_logp_error"] < 0.75 * results["mean-subtoken"]["seq_logp_error"], results
    # and takes far less probability from English
    assert results["distill"]["english_mass"] < 0.3 * results["mean-subtoken"]["english_mass"], results
