"""The gathered trainable-row path: equal to peft's trainable_token_indices, no vocabulary-sized temporaries,
peft's adapter files, and a train -> export round trip whose merged rows are the trained rows.

Tiny random Llamas (hidden 64, multiples of 64) built in-test; the round trip uses the real trainer and exporter
on a prepared model with an extended tokenizer built from ../shared/data. Torch runs on one thread.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from zhtw.pretrain.loss import chunked_causal_lm_loss  # noqa: E402
from zhtw.pretrain.new_rows import row_segments, use_row_gather  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VOCAB, HIDDEN = 1024, 64


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _base(tied: bool) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def _peft(base: torch.nn.Module, ids: list[int], tied: bool, gather: bool) -> torch.nn.Module:
    """LoRA + trainable rows on a copy of `base`; every trainable weight perturbed the same way in both paths
    (rows that equal the base rows would hide a path that ignores them)."""
    from peft import LoraConfig, get_peft_model

    spec = ids if tied else {"embed_tokens": ids, "lm_head": ids}
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", trainable_token_indices=spec)
    torch.manual_seed(1)
    model = get_peft_model(copy.deepcopy(base), config)
    if gather:
        assert use_row_gather(model) == 2
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _loss_and_grads(
    model: torch.nn.Module, ids: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.train()
    out = model(input_ids=ids, output_hidden_states=True, logits_to_keep=1, use_cache=False)
    loss = chunked_causal_lm_loss(out.hidden_states[-1], model.get_output_embeddings(), ids, chunk_tokens=16)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("layout", ["range", "scattered"])
def test_gathered_rows_equal_peft_loss_and_gradients(tied, layout):
    ids = list(range(600, 900)) if layout == "range" else [900, 5, 601, 602, 603, 17, 1023, 400]
    base = _base(tied)
    ref, new = _peft(base, ids, tied, gather=False), _peft(base, ids, tied, gather=True)
    batch = torch.tensor([[1, 5, 17, 400, 601, 602, 603, 900, 1023, 3] * 4 + list(range(590, 614))])
    l_ref, g_ref = _loss_and_grads(ref, batch)
    l_new, g_new = _loss_and_grads(new, batch)
    assert torch.allclose(l_ref, l_new, rtol=1e-5, atol=1e-6)
    rows = [k for k in g_ref if "trainable_tokens_delta" in k]
    assert g_ref.keys() == g_new.keys() and len(rows) == (1 if tied else 2)
    for k in g_ref:
        assert torch.allclose(g_ref[k], g_new[k], rtol=1e-4, atol=1e-6), k
    assert all(g_new[k].abs().sum() > 0 for k in rows)  # the rows really carry gradient
    # evaluation (no grad, full logits) agrees too
    ref.eval(), new.eval()
    with torch.no_grad():
        assert torch.allclose(ref(input_ids=batch).logits, new(input_ids=batch).logits, atol=1e-5)


def test_row_segments_cover_the_vocabulary_once():
    assert row_segments(list(range(5, 9)), 12) == [(0, 5, None), (5, 9, 0), (9, 12, None)]
    assert row_segments([9, 3, 4], 10) == [(0, 3, None), (3, 5, 1), (5, 9, None), (9, 10, 0)]
    assert row_segments([0, 1], 2) == [(0, 2, 0)]
    segs = row_segments([7, 2, 3, 11, 12, 13], 14)
    assert [s[:2] for s in segs] == [(0, 2), (2, 4), (4, 7), (7, 8), (8, 11), (11, 14)]


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_no_vocabulary_sized_tensor_in_a_training_step(tied):
    """A step (forward, chunked loss, backward) never builds a vocabulary x hidden tensor, nor full logits.
    peft's own layer does (index_copy of the whole matrix): the check sees it."""
    ids = list(range(512, VOCAB))
    batch = torch.randint(0, VOCAB, (1, 64), generator=torch.Generator().manual_seed(0))
    largest = {}
    for gather in (False, True):
        model = _peft(_base(tied), ids, tied, gather)
        with _LargestTensor() as probe:
            _loss_and_grads(model, batch)
        largest[gather] = probe.largest
    assert largest[False] >= VOCAB * HIDDEN  # the merged copy
    # at most the rows' gradient (512 x 64); chunk logits are 16 x 1024; never the whole sequence's 64 x 1024
    assert largest[True] <= len(ids) * HIDDEN < 64 * VOCAB


def test_rows_train_in_float32_on_a_bf16_base_and_save_as_peft():
    from peft import PeftModel

    base = _base(tied=False).to(torch.bfloat16)
    model = _peft(base, list(range(600, 700)), tied=False, gather=True)
    rows = {n: p for n, p in model.named_parameters() if "trainable_tokens_delta" in n}
    assert {p.dtype for p in rows.values()} == {torch.float32}
    assert model.get_input_embeddings().token_adapter.base_layer.weight.dtype == torch.bfloat16
    return_dir = Path(__import__("tempfile").mkdtemp())
    try:
        model.save_pretrained(return_dir)
        config = json.loads((return_dir / "adapter_config.json").read_text())
        assert config["trainable_token_indices"]["lm_head"] == list(range(600, 700))
        loaded = PeftModel.from_pretrained(_base(tied=False), return_dir)  # plain peft reads the files
        for name, p in loaded.named_parameters():
            if "trainable_tokens_delta" in name:
                assert torch.equal(p.float(), rows[name].detach()), name
    finally:
        shutil.rmtree(return_dir)


# --------------------------------------------------------------------------------------------------------------
# train -> export round trip with the real stages


@pytest.fixture(scope="module")
def prepared(shared_data, tmp_path_factory):
    """An untied random Llama (hidden 64) with stories260K's tokenizer, prepared for a 640-piece zh-TW extension."""
    import gzip

    from transformers import LlamaConfig, LlamaForCausalLM

    from zhtw.pretrain.prepare import prepare_model
    from zhtw.tokenizer.cli import main as tok_main

    root = tmp_path_factory.mktemp("rows")
    text = root / "text"
    text.mkdir()
    with gzip.open(shared_data / "corpus/train/hongloumeng.jsonl.gz", "rt", encoding="utf-8") as f:
        lines = [line for _, line in zip(range(40), f)]
    (text / "hlm.jsonl").write_text("".join(lines), encoding="utf-8")
    tok_main(["build", "--base", str(shared_data / "models/stories260K"), "--corpus", str(text),
              "--output", str(root / "tok"), "--vocab-size", "640", "--quiet"])  # fmt: skip
    base = root / "base"
    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(base)
    shutil.copy(shared_data / "models/stories260K/tokenizer.model", base / "tokenizer.model")
    prepare_model(str(base), str(root / "tok"), str(root / "prepared"))
    return root


@pytest.mark.shared_data
def test_train_then_export_merges_the_trained_rows(prepared):
    from safetensors.torch import load_file

    from zhtw.pretrain.export import export
    from zhtw.pretrain.train import main as train_main

    run = prepared / "run"
    train_main([str(REPO / "configs/tiny-cpu.yaml"), "--model_path", str(prepared / "prepared"),
                "--data_files", str(prepared / "text"), "--data_cache_dir", str(prepared / "cache"),
                "--output_dir", str(run), "--block_size", "64", "--max_steps", "4", "--save_steps", "4",
                "--eval_strategy", "no", "--logging_steps", "2", "--report_to", "none", "--trainable_norms",
                "false", "--disable_tqdm", "true", "--lora_optimizer_states", "bfloat16"])  # fmt: skip
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    meta = json.loads((prepared / "prepared" / "zhtw_prepare.json").read_text())
    first, last = meta["new_token_ids"]
    trained = {
        "model.embed_tokens.weight": adapter[
            "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
        ],
        "lm_head.weight": adapter["base_model.model.lm_head.token_adapter.trainable_tokens_delta"],
    }
    initial = load_file(str(prepared / "prepared" / "model.safetensors"))
    out = prepared / "export"
    result = export(
        prepared / "prepared", run / "adapter", out, dtype="fp32", verify="fp32", log=lambda _: None
    )
    assert result["verify"]["passed"]
    merged = load_file(str(out / "model.safetensors"))
    for name, rows in trained.items():
        assert rows.dtype == torch.float32 and rows.shape == (last - first, 64)
        assert not torch.allclose(rows, initial[name][first:last].float())  # four steps moved them
        assert torch.equal(merged[name][first:last], rows), name
        assert torch.equal(merged[name][:first], initial[name][:first].float())  # frozen rows untouched
