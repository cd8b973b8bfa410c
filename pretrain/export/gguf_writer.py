"""GGUF for llama.cpp / Ollama from an exported (merged) Llama model directory, with the `gguf` package.

Why here and not llama.cpp's converter: the converter is a script outside any package, and the extended
vocabulary must go in exactly as the Hugging Face tokenizer sees it. This writes llama.cpp's `llama`
architecture metadata, the SentencePiece vocabulary (pieces, scores = merge priorities, token types with
byte/control/unknown pieces, special ids, tokenizer model "llama", pad rows as unused `[PADn]` tokens),
and the tensors under llama.cpp's names, Q/K rows permuted the way llama.cpp's RoPE expects
(`convert_hf_to_gguf.py`'s `LlamaModel.permute`). Tensors are streamed one at a time (header first, then
each tensor as it is converted), so memory stays at one tensor. 2-D weights go in as f16 or q8_0
(rows not divisible by 32 stay f16, as llama.cpp's converter does), norms as f32.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import show_path

__all__ = ["GGUFExportError", "gguf_tensor_name", "permute_qk", "read_back", "write_gguf"]

Log = Callable[[str], None]

_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TOP_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


class GGUFExportError(ZhtwError):
    """The model cannot be written as a llama.cpp `llama` GGUF; the message says why and what to do."""


def gguf_tensor_name(name: str) -> str:
    """llama.cpp's name for a Hugging Face Llama tensor name."""
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    parts = name.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER_NAMES:
        return f"blk.{int(parts[2])}.{_LAYER_NAMES[parts[3]]}"
    raise GGUFExportError(
        f"tensor {name} has no llama.cpp counterpart; only plain Llama checkpoints (no biases, no extra "
        "modules) can be written as GGUF here. Use llama.cpp's convert_hf_to_gguf.py on the exported directory."
    )


def permute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder Q/K rows from Hugging Face's rotate-half layout to llama.cpp's interleaved RoPE pairs."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _tensors(out: Path) -> Iterator[tuple[str, Any]]:
    """(name, lazy slice) for every tensor of the exported safetensors, one file open at a time."""
    from safetensors import safe_open

    index = out / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for file in files:
        with safe_open(str(out / file), "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open API)
                yield name, f


def _plan(name: str, shape: tuple[int, ...], qtype: str) -> Any:
    from gguf import GGMLQuantizationType as Q

    if len(shape) == 1:
        return Q.F32
    if qtype == "q8_0" and shape[-1] % 32 == 0:
        return Q.Q8_0
    return Q.F16


def _convert(array: np.ndarray, target: Any) -> np.ndarray:
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    if target == Q.F32:
        return array.astype(np.float32)
    if target == Q.F16:
        return array.astype(np.float16)
    return quantize(array.astype(np.float32), target)


def _vocab(out: Path, rows: int) -> Any:
    """The GGUF vocabulary of the exported directory, from its tokenizer backend, padded to the embedding rows."""
    from zhtw.tokenizer.backends import backend_for_dir
    from zhtw.tokenizer.errors import TokenizerStageError

    try:
        return backend_for_dir(out).gguf_vocab(out, rows)
    except TokenizerStageError as e:
        raise GGUFExportError(
            f"{show_path(out)}: no GGUF vocabulary ({e}); export from a prepared model whose tokenizer "
            "`zhtw-tok build` wrote."
        ) from e


def _add_vocab(writer: Any, vocab: Any) -> None:
    """The tokenizer.ggml.* fields: model and pre-tokenizer written explicitly, never guessed by llama.cpp."""
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    if vocab.merges is not None:
        writer.add_token_merges(vocab.merges)
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id,
              "unk": writer.add_unk_token_id, "pad": writer.add_pad_token_id}  # fmt: skip
    for key, token_id in vocab.special_ids.items():
        adders[key](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.remove_extra_whitespaces is not None:
        writer.add_remove_extra_whitespaces(vocab.remove_extra_whitespaces)


def _parameter_count(out: Path, tied: bool) -> int:
    """Parameters of the exported model (a tied head counted once), from the safetensors headers."""
    total = 0
    for name, handle in _tensors(out):
        if not (tied and name == "lm_head.weight"):
            total += int(np.prod(handle.get_slice(name).get_shape()))
    return total


def general_metadata(out: Path, identity: Any | None, tied: bool) -> dict[str, Any]:
    """The GGUF `general.*` keys llama.cpp and the hub show: name, basename, size label, license, base model,
    source. `identity` is the export's `ModelIdentity` (names chosen once for the card and the GGUF)."""
    import gguf

    keys: dict[str, Any] = {"general.name": identity.name if identity else out.name}
    keys["general.size_label"] = gguf.size_label(_parameter_count(out, tied), 0, 0, 0)
    if identity is None:
        return keys
    keys["general.basename"] = identity.basename
    keys["general.finetune"] = "zhtw"
    keys["general.license"] = identity.license
    if identity.base_model:
        url = f"https://huggingface.co/{identity.base_model}"
        owner, _, base_name = identity.base_model.partition("/")
        keys["general.base_model.count"] = 1
        keys["general.base_model.0.name"] = base_name
        keys["general.base_model.0.organization"] = owner
        keys["general.base_model.0.repo_url"] = url
        keys["general.source.repo_url"] = url  # the weights this model was made from
    for i, name in enumerate(identity.datasets):
        keys.setdefault("general.dataset.count", len(identity.datasets))
        keys[f"general.dataset.{i}.name"] = name
    return keys


def _add_general(writer: Any, keys: dict[str, Any]) -> None:
    for key, value in keys.items():
        if isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, str(value))


def write_gguf(out: Path, qtype: str = "f16", log: Log = print, identity: Any | None = None) -> dict[str, Any]:
    """Write `out/model-<qtype>.gguf` from the exported directory `out`, read it back, return a summary."""
    import gguf

    if qtype not in ("f16", "q8_0"):
        raise GGUFExportError(f"GGUF type {qtype!r} is not supported; choose f16 or q8_0.")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise GGUFExportError(
            f"model_type {config.get('model_type')!r} is not 'llama'; this writer only knows llama.cpp's llama "
            "architecture. Use llama.cpp's convert_hf_to_gguf.py on the exported directory."
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type not in ("default", "linear"):
        raise GGUFExportError(
            f"RoPE type {rope_type!r} needs extra GGUF tensors this writer does not produce; use llama.cpp's "
            "convert_hf_to_gguf.py on the exported directory."
        )
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_head)
    rows = int(config["vocab_size"])
    tied = bool(config.get("tie_word_embeddings", False))
    vocab = _vocab(out, rows)

    path = out / f"model-{qtype}.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    general = general_metadata(out, identity, tied)
    _add_general(writer, general)
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(hidden)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    if head_dim != hidden // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_vocab_size(rows)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_vocab(writer, vocab)

    # pass 1: tensor infos (shapes and byte sizes), pass 2: data in the same order
    plan: list[tuple[str, str, Any, tuple[int, ...]]] = []
    for name, handle in _tensors(out):
        if tied and name == "lm_head.weight":
            continue
        shape = tuple(handle.get_slice(name).get_shape())
        target = _plan(name, shape, qtype)
        plan.append((name, gguf_tensor_name(name), target, shape))
        if target in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            dtype = np.float32 if target == gguf.GGMLQuantizationType.F32 else np.float16
            writer.add_tensor_info(
                plan[-1][1], shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize
            )
        else:
            byte_shape = gguf.quant_shape_to_byte_shape(shape, target)
            writer.add_tensor_info(
                plan[-1][1], byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=target
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    order = {name: i for i, (name, *_rest) in enumerate(plan)}
    written = 0
    for name, handle in _tensors(out):
        if name not in order:
            continue
        _, gname, target, _shape = plan[written]
        assert plan[written][0] == name, "tensor order changed between passes"
        array = handle.get_tensor(name).float().numpy()
        if name.endswith("self_attn.q_proj.weight"):
            array = permute_qk(array, n_head)
        elif name.endswith("self_attn.k_proj.weight"):
            array = permute_qk(array, n_kv)
        writer.write_tensor_data(_convert(array, target))
        written += 1
    writer.close()
    counts: dict[str, int] = {}
    for _, _, target, _ in plan:
        counts[target.name] = counts.get(target.name, 0) + 1
    check = read_back(path, out, general)
    log(
        f"wrote {path.name} ({path.stat().st_size / 2**20:,.1f} MiB, {len(plan)} tensors: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"); read back: {check['tokens']:,} tokens, {check['tensors']} tensors, metadata ok"
    )
    return {
        "file": path.name,
        "type": qtype,
        "bytes": path.stat().st_size,
        "tensor_types": counts,
        "general": general,
        "read_back": check,
    }


def _field(reader: Any, key: str) -> Any:
    f = reader.get_field(key)
    if f is None:
        raise GGUFExportError(f"the GGUF file lacks {key}")
    return f.contents()


def read_back(path: Path, out: Path, general: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check a written GGUF with GGUFReader against the exported directory: metadata, vocabulary, shapes."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    rows = int(config["vocab_size"])
    vocab = _vocab(out, rows)
    expect = {
        "general.architecture": "llama",
        "llama.block_count": int(config["num_hidden_layers"]),
        "llama.embedding_length": int(config["hidden_size"]),
        "llama.attention.head_count": int(config["num_attention_heads"]),
        "llama.attention.head_count_kv": int(
            config.get("num_key_value_heads") or config["num_attention_heads"]
        ),
        "tokenizer.ggml.model": vocab.model,
        "tokenizer.ggml.pre": vocab.pre,
        **{f"tokenizer.ggml.{k}_token_id": i for k, i in vocab.special_ids.items() if k in ("bos", "eos")},
        **(general or {}),
    }
    for key, value in expect.items():
        got = _field(reader, key)
        if got != value:
            raise GGUFExportError(f"{path}: {key} is {got!r}, expected {value!r}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    if [t.encode("utf-8") for t in tokens] != vocab.tokens:
        raise GGUFExportError(f"{path}: the token list differs from the tokenizer's")
    if list(_field(reader, "tokenizer.ggml.token_type")) != vocab.types:
        raise GGUFExportError(f"{path}: the token types differ from the tokenizer's")
    if vocab.merges is not None and list(_field(reader, "tokenizer.ggml.merges")) != vocab.merges:
        raise GGUFExportError(f"{path}: the merges differ from the tokenizer's")
    shapes = {t.name: tuple(int(x) for x in reversed(t.shape.tolist())) for t in reader.tensors}
    want: dict[str, tuple[int, ...]] = {}
    for name, handle in _tensors(out):
        if config.get("tie_word_embeddings") and name == "lm_head.weight":
            continue
        want[gguf_tensor_name(name)] = tuple(handle.get_slice(name).get_shape())
    if shapes != want:
        diff = sorted(set(shapes.items()) ^ set(want.items()))[:4]
        raise GGUFExportError(f"{path}: tensor names/shapes differ from the safetensors: {diff}")
    return {"tokens": len(tokens), "tensors": len(shapes), "metadata_keys": len(reader.fields)}
