"""S²-Attn: exactness against sdpa, a float64 dense-mask reference, no leaks, padding, PEFT, 4-bit, names."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.llama.modeling_llama import LlamaAttention

from zhtw.pretrain.s2attn import (
    DEFAULT_NAME,
    ROLL_NAME,
    S2AttentionError,
    UnsupportedModelError,
    attention_name,
    disable_s2_attention,
    enable_s2_attention,
    group_size,
    register_s2_attention,
    s2_attention_forward,
)

VOCAB = 128


# ---------------------------------------------------------------------------------------------------
# Helpers


def _config(heads: int = 4, kv_heads: int = 2, cls: type = LlamaConfig, **extra) -> LlamaConfig:
    return cls(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        attn_implementation="sdpa",
        **extra,
    )


def _model(
    seed: int = 0, config: LlamaConfig | None = None, cls: type = LlamaForCausalLM
) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = cls(copy.deepcopy(config) if config is not None else _config())
    return model.train()


def _ids(batch: int, seq: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (batch, seq), generator=gen)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    G: int,
    variant: str,
    key_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dense float64 S²-Attn straight from the definition; returns [B,S,H,D]."""
    q, k, v = (t.double() for t in (q, k, v))
    batch, heads, seq, dim = q.shape
    k = k.repeat_interleave(heads // k.shape[1], dim=1)
    v = v.repeat_interleave(heads // v.shape[1], dim=1)
    pos = torch.arange(seq)
    half = G // 2
    plain = (pos[:, None] // G == pos[None, :] // G) & (pos[None, :] <= pos[:, None])
    if variant == "noleak":
        seg = torch.where(pos < half, 0, 1 + (pos - half).div(G, rounding_mode="floor"))
        shifted = (seg[:, None] == seg[None, :]) & (pos[None, :] <= pos[:, None])
    else:
        r = (pos - half) % seq
        shifted = (r[:, None] // G == r[None, :] // G) & (r[None, :] <= r[:, None])
    allowed = torch.stack([plain if h < heads // 2 else shifted for h in range(heads)])[None]  # [1,H,S,S]
    if key_valid is not None:
        allowed = allowed & key_valid[:, None, None, :]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(dim)
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked rows give zeros
    return (probs @ v).transpose(1, 2)


def _attention_module(heads: int, kv_heads: int, dim: int = 16) -> LlamaAttention:
    config = LlamaConfig(
        hidden_size=heads * dim, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=dim
    )
    return LlamaAttention(config, layer_idx=0).train()


def _qkv(batch: int, heads: int, kv_heads: int, seq: int, dim: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, seq, dim, generator=gen, requires_grad=True)
    k = torch.randn(batch, kv_heads, seq, dim, generator=gen, requires_grad=True)
    v = torch.randn(batch, kv_heads, seq, dim, generator=gen, requires_grad=True)
    return q, k, v


def _padding(batch: int, seq: int, side: str) -> torch.Tensor:
    """Row 0 unpadded, row b>0 padded by 5*b tokens on `side`; True = real token."""
    valid = torch.ones(batch, seq, dtype=torch.bool)
    for b in range(1, batch):
        n = min(5 * b, seq - 1)
        if side == "right":
            valid[b, seq - n :] = False
        else:
            valid[b, :n] = False
    return valid


def _sdpa_style_mask(valid: torch.Tensor) -> torch.Tensor:
    """The [B,1,S,S] boolean mask transformers' sdpa_mask builds: causal and key padding."""
    seq = valid.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    return causal[None, None] & valid[:, None, None, :]


# ---------------------------------------------------------------------------------------------------
# Group size and settings


def test_group_size_rules():
    assert group_size(8192, 0.25) == 2048
    assert group_size(50, 0.25) == 12  # floor(12.5)
    assert group_size(100, 0.29) == 29  # 0.29*100 is 28.999... in floating point
    assert group_size(3, 0.25) == 1  # never 0
    assert group_size(64, 1.0) == 64


def test_invalid_settings_raise_typed_errors():
    with pytest.raises(S2AttentionError, match="variant"):
        attention_name(0.25, "wrap")
    for bad in (0.0, -0.5, 1.5, float("nan"), "0.25"):
        with pytest.raises(S2AttentionError, match="group_ratio"):
            attention_name(bad)
    with pytest.raises(UnsupportedModelError, match="not a transformers model"):
        enable_s2_attention(torch.nn.Linear(4, 4))


def test_names():
    assert attention_name() == DEFAULT_NAME == "s2attn"
    assert attention_name(variant="roll") == ROLL_NAME == "s2attn_roll"
    assert register_s2_attention(0.125) == "s2attn_noleak_r0.125"
    assert register_s2_attention(1.0, "noleak", shift=False) == "s2attn_noleak_noshift_r1.0"


# ---------------------------------------------------------------------------------------------------
# The attention function against references

# (heads, kv heads, length, G): GQA, MHA, one KV head shared by both halves, halves that split a KV
# group, odd G with a ragged length, even G with a ragged length, G = 1.
CASES = [
    (4, 2, 64, 16),
    (4, 4, 64, 32),
    (4, 1, 48, 12),
    (6, 3, 40, 10),
    (4, 2, 50, 7),
    (4, 2, 70, 16),
    (2, 1, 9, 1),
]


@pytest.mark.parametrize("variant", ["noleak", "roll"])
@pytest.mark.parametrize("padding", [None, "right", "left"])
@pytest.mark.parametrize(("heads", "kv_heads", "seq", "G"), CASES)
def test_matches_float64_reference(heads, kv_heads, seq, G, variant, padding):
    batch = 3 if padding else 2
    module = _attention_module(heads, kv_heads)
    q, k, v = _qkv(batch, heads, kv_heads, seq)
    valid = _padding(batch, seq, padding) if padding else None
    mask = _sdpa_style_mask(valid) if padding else None
    assert group_size(seq, G / seq) == G
    out, weights = s2_attention_forward(
        module, q, k, v, mask, scaling=module.scaling, group_ratio=G / seq, variant=variant
    )
    assert weights is None and out.shape == (batch, seq, heads, q.shape[-1]) and out.dtype == torch.float32

    expected = reference_attention(q, k, v, G, variant, valid)
    assert (out.double() - expected).abs().max().item() <= 1e-5

    grad_out = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad_out)
    want = torch.autograd.grad(expected, (q, k, v), grad_out.double())
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        assert (g.double() - w).abs().max().item() <= 1e-5


@pytest.mark.parametrize("padding", [None, "right"])
@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 2), (4, 4), (4, 1)])
def test_no_shift_full_group_equals_builtin_sdpa_exactly(heads, kv_heads, padding):
    module = _attention_module(heads, kv_heads)
    seq = 40
    q, k, v = _qkv(2, heads, kv_heads, seq)
    mask = _sdpa_style_mask(_padding(2, seq, padding)) if padding else None
    ours, _ = s2_attention_forward(
        module, q, k, v, mask, scaling=module.scaling, group_ratio=1.0, shift=False
    )
    theirs, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=module.scaling)
    assert torch.equal(ours, theirs)
    grad_out = torch.randn_like(ours)
    for a, b in zip(
        torch.autograd.grad(ours, (q, k, v), grad_out), torch.autograd.grad(theirs, (q, k, v), grad_out)
    ):
        assert torch.equal(a, b)


@pytest.mark.parametrize("window", [3, 6])
def test_noleak_keeps_every_restriction_of_the_model_mask(window):
    """A sliding-window (Mistral) mask is intersected with the groups, not replaced by them."""
    module = _attention_module(4, 2)
    seq, G = 48, 12
    q, k, v = _qkv(2, 4, 2, seq)
    pos = torch.arange(seq)
    in_window = (pos[:, None] - pos[None, :]) < window
    mask = _sdpa_style_mask(torch.ones(2, seq, dtype=torch.bool)) & in_window
    out, _ = s2_attention_forward(module, q, k, v, mask, scaling=module.scaling, group_ratio=G / seq)
    s2_only = reference_attention(q, k, v, G, "noleak")
    # reference with the window: dense masked attention again, window folded into the key mask per row
    q64, k64, v64 = (t.double() for t in (q, k, v))
    k64, v64 = k64.repeat_interleave(2, dim=1), v64.repeat_interleave(2, dim=1)
    half = G // 2
    seg = torch.where(pos < half, 0, 1 + (pos - half).div(G, rounding_mode="floor"))
    causal = pos[None, :] <= pos[:, None]
    plain = (pos[:, None] // G == pos[None, :] // G) & causal & in_window
    shifted = (seg[:, None] == seg[None, :]) & causal & in_window
    allowed = torch.stack([plain, plain, shifted, shifted])[None]
    scores = (q64 @ k64.transpose(-1, -2) / 4.0).masked_fill(~allowed, float("-inf"))
    expected = (torch.softmax(scores, -1) @ v64).transpose(1, 2)
    assert (out.double() - expected).abs().max().item() <= 1e-5
    assert (out.double() - s2_only).abs().max().item() > 1e-2


def test_eval_mode_is_full_attention():
    module = _attention_module(4, 2).eval()
    q, k, v = _qkv(2, 4, 2, 32)
    ours, _ = s2_attention_forward(module, q, k, v, None, scaling=module.scaling)
    theirs, _ = sdpa_attention_forward(module, q, k, v, None, scaling=module.scaling)
    assert torch.equal(ours, theirs)


# ---------------------------------------------------------------------------------------------------
# Whole models


def test_model_shift_off_full_group_equals_sdpa_outputs_and_gradients():
    ids = _ids(2, 48)
    ref, s2 = _model(), _model()
    assert enable_s2_attention(s2, group_ratio=1.0, shift=False) == "s2attn_noleak_noshift_r1.0"
    ref(input_ids=ids, labels=ids).loss.backward()
    out = s2(input_ids=ids, labels=ids)
    out.loss.backward()
    assert torch.equal(out.logits, ref(input_ids=ids).logits)
    want = _grads(ref)
    got = _grads(s2)
    assert got.keys() == want.keys() and all(torch.equal(got[n], want[n]) for n in want)


def _leak_positions(model: torch.nn.Module, seq: int) -> list[int]:
    """Positions t at which perturbing every token after t changed a logit at a position <= t."""
    ids = _ids(1, seq)
    with torch.no_grad():
        base = model(input_ids=ids).logits
        leaks = []
        for t in range(seq - 1):
            other = ids.clone()
            other[:, t + 1 :] = (ids[:, t + 1 :] + 1 + torch.arange(seq - t - 1)) % (VOCAB - 1) + 1
            assert not torch.equal(other[:, t + 1 :], ids[:, t + 1 :])
            logits = model(input_ids=other).logits
            if (logits[:, : t + 1] - base[:, : t + 1]).abs().max().item() > 1e-6:
                leaks.append(t)
    return leaks


@pytest.mark.parametrize("seq", [32, 30])  # G = 8, and G = 7 (odd) with a ragged length
@pytest.mark.parametrize("cls", [LlamaForCausalLM, MistralForCausalLM])
def test_noleak_never_sees_the_future_and_roll_does(seq, cls):
    config = _config(cls=MistralConfig, sliding_window=None) if cls is MistralForCausalLM else _config()
    model = _model(config=config, cls=cls)
    enable_s2_attention(model, variant="noleak")
    assert model.training and _leak_positions(model, seq) == []

    enable_s2_attention(model, variant="roll")
    half = group_size(seq, 0.25) // 2
    leaks = _leak_positions(model, seq)
    # the first G/2 tokens see the last G/2: perturbing anything after t < G/2 reaches them
    assert set(range(half)) <= set(leaks)


def test_s2_changes_training_outputs_and_gradients_are_finite():
    ids = _ids(2, 64)
    ref, model = _model(), _model()
    enable_s2_attention(model)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert not torch.allclose(out.logits, ref(input_ids=ids).logits, atol=1e-3)
    grads = _grads(model)
    assert len(grads) == len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize(
    ("variant", "side"), [("noleak", "left"), ("roll", "left"), ("roll", "right"), ("noleak", "right")]
)
def test_padded_keys_get_no_weight(variant, side):
    seq = 40
    ids = _ids(3, seq)
    valid = _padding(3, seq, side)
    model = _model()
    enable_s2_attention(model, variant=variant)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=valid.long()).logits
        junk = torch.where(valid, ids, (ids * 7 + 3) % (VOCAB - 1) + 1)
        assert not torch.equal(junk, ids)
        logits_junk = model(input_ids=junk, attention_mask=valid.long()).logits
        # the unpadded row is independent of the other rows of the batch
        alone = model(input_ids=ids[:1], attention_mask=valid[:1].long()).logits
    assert torch.allclose(logits[valid], logits_junk[valid], atol=1e-6, rtol=0)
    assert torch.allclose(logits[0], alone[0], atol=1e-5, rtol=0)
    assert torch.isfinite(logits).all() and torch.isfinite(logits_junk).all()


def test_padding_is_passed_through_the_model_mask():
    """Without the registered mask function the model would hand the attention no padding at all."""
    seq = 40
    ids = _ids(2, seq)
    valid = _padding(2, seq, "left")
    model = _model()
    enable_s2_attention(model)
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=valid.long()).logits
        unpadded = model(input_ids=ids).logits
    assert not torch.allclose(padded[1][valid[1]], unpadded[1][valid[1]], atol=1e-3)


def test_gradient_checkpointing_gives_equal_gradients():
    ids = _ids(2, 40)
    valid = _padding(2, 40, "right")
    labels = ids.masked_fill(~valid, -100)
    grads = []
    for checkpointing in (False, True):
        model = _model()
        enable_s2_attention(model)
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model(input_ids=ids, attention_mask=valid.long(), labels=labels).loss.backward()
        grads.append(_grads(model))
    plain, ckpt = grads
    assert plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=0, atol=1e-6)
        assert torch.isfinite(plain[name]).all()


def test_eval_and_generation_use_full_attention():
    ids = _ids(2, 24)
    ref, model = _model().eval(), _model()
    enable_s2_attention(model)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, ref(input_ids=ids).logits)
    gen = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(model.generate(ids, **gen), ref.generate(ids, **gen))


def test_disable_restores_previous_implementation():
    ids = _ids(1, 32)
    ref, model = _model(), _model()
    model.set_attn_implementation("eager")
    enable_s2_attention(model)
    enable_s2_attention(model, variant="roll")  # switching settings keeps the original to return to
    assert model.config._attn_implementation == ROLL_NAME
    assert disable_s2_attention(model) == "eager"
    assert disable_s2_attention(model) == "eager"  # no-op when not enabled
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, ref(input_ids=ids).logits)


def test_models_sharing_a_config_are_not_switched_together():
    config = _config()
    torch.manual_seed(0)
    a = LlamaForCausalLM(config).train()
    torch.manual_seed(0)
    b = LlamaForCausalLM(config).train()
    assert a.config is b.config
    enable_s2_attention(a)
    assert a.config._attn_implementation == DEFAULT_NAME
    assert b.config._attn_implementation == config._attn_implementation == "sdpa"
    assert all(m.config is a.config for m in a.modules() if hasattr(m, "config"))
    ids = _ids(1, 32)
    with torch.no_grad():
        assert not torch.allclose(a(input_ids=ids).logits, b(input_ids=ids).logits, atol=1e-3)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("tiny-llama")
    _model().save_pretrained(path)
    return path


@pytest.mark.parametrize(("name", "variant"), [(DEFAULT_NAME, "noleak"), (ROLL_NAME, "roll")])
def test_selectable_by_attn_implementation_name(saved_model, name, variant):
    ids = _ids(2, 32)
    loaded = LlamaForCausalLM.from_pretrained(saved_model, attn_implementation=name).train()
    assert loaded.config._attn_implementation == name
    switched = LlamaForCausalLM.from_pretrained(saved_model).train()
    enable_s2_attention(switched, variant=variant)
    by_method = LlamaForCausalLM.from_pretrained(saved_model).train()
    by_method.set_attn_implementation(name)
    full = LlamaForCausalLM.from_pretrained(saved_model).train()
    with torch.no_grad():
        logits = loaded(input_ids=ids).logits
        assert torch.equal(logits, switched(input_ids=ids).logits)
        assert torch.equal(logits, by_method(input_ids=ids).logits)
        assert not torch.allclose(logits, full(input_ids=ids).logits, atol=1e-3)
    # a loaded model's own implementation counts as "previous"-less: disabling goes to sdpa
    assert disable_s2_attention(loaded) == "sdpa"


def test_custom_settings_selectable_by_registered_name(saved_model):
    name = register_s2_attention(0.5, "noleak")
    ids = _ids(1, 32)
    loaded = LlamaForCausalLM.from_pretrained(saved_model, attn_implementation=name).train()
    switched = LlamaForCausalLM.from_pretrained(saved_model).train()
    assert enable_s2_attention(switched, group_ratio=0.5) == name
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, switched(input_ids=ids).logits)


def test_peft_wrapped_model():
    peft = pytest.importorskip("peft")
    ids = _ids(2, 40)
    base_s2 = _model()
    enable_s2_attention(base_s2)
    model = peft.get_peft_model(_model(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert enable_s2_attention(model) == DEFAULT_NAME
    assert model.config._attn_implementation == DEFAULT_NAME
    out = model(input_ids=ids, labels=ids)
    # LoRA starts as a no-op, so the wrapped model computes exactly the base model's S²-Attn
    torch.testing.assert_close(out.logits, base_s2(input_ids=ids).logits, rtol=0, atol=1e-6)
    out.loss.backward()
    lora = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert lora and all(g is not None and torch.isfinite(g).all() for g in lora.values())
    assert any(g.abs().sum() > 0 for n, g in lora.items() if "lora_B" in n)
    disable_s2_attention(model)
    full = _model()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, full(input_ids=ids).logits, rtol=0, atol=1e-6)


def test_four_bit_qlora_model(saved_model):
    """The QLoRA setup: a 4-bit NF4 base wrapped by PEFT LoRA, switched through the PEFT wrapper."""
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (pip install bitsandbytes)")
    peft = pytest.importorskip("peft")
    from bitsandbytes.nn import Linear4bit
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    base = LlamaForCausalLM.from_pretrained(saved_model, quantization_config=quant, dtype=torch.float32)
    layers = [m for m in base.modules() if isinstance(m, Linear4bit)]
    assert layers
    for layer in layers:  # CPU repacking for AVX512-BF16 breaks later backward passes (see GUIDE)
        layer.support_avx512bf16_for_cpu = False
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    ids = _ids(1, 32)
    model.train()
    with torch.no_grad():
        full = model(input_ids=ids).logits
    assert enable_s2_attention(model) == DEFAULT_NAME
    out = model(input_ids=ids, labels=ids)
    assert not torch.allclose(out.logits, full, atol=1e-3)
    out.loss.backward()
    lora = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert lora and all(g is not None and torch.isfinite(g).all() for g in lora.values())
    assert any(g.abs().sum() > 0 for n, g in lora.items() if "lora_B" in n)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, full, rtol=0, atol=1e-5)


def test_unsupported_model_type_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=1, n_head=4, vocab_size=VOCAB, n_positions=64))
    with pytest.raises(UnsupportedModelError, match="model types"):
        enable_s2_attention(model)


def test_packed_sequences_stay_separate_with_noleak():
    """Position ids that restart mark packed documents; transformers' mask keeps them apart and so does noleak.

    transformers only looks for packed documents without a cache, hence use_cache=False (as in training).
    """
    seq = 32
    ids = _ids(1, seq)
    position_ids = torch.cat([torch.arange(12), torch.arange(seq - 12)])[None]
    model = _model()
    enable_s2_attention(model)
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=position_ids, use_cache=False).logits
        other = ids.clone()
        other[:, :12] = (ids[:, :12] * 5 + 1) % (VOCAB - 1) + 1
        logits_other = model(input_ids=other, position_ids=position_ids, use_cache=False).logits
    torch.testing.assert_close(logits[:, 12:], logits_other[:, 12:], rtol=0, atol=1e-6)
    assert not torch.allclose(logits[:, :12], logits_other[:, :12], atol=1e-3)
