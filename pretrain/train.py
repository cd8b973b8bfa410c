"""`zhtw-pretrain train`: QLoRA continued pretraining of a prepared model with trainable new-token rows and S²-Attn.

Reads top to bottom: parse the config, (``--dry-run``: estimate memory and exit), check the tokenizer
against the prepared model, pack the data, load the base (NF4 or full precision), wrap it with LoRA and
trainable token rows, switch on S²-Attn, train with transformers' Trainer (chunked loss), then save the
final adapter, ``loss.png`` and ``training_summary.json`` for the export stage.

Output directory (see README_TRAIN.md)::

    OUTPUT_DIR/
      checkpoint-N/            adapter + trained rows + optimizer/scheduler/RNG state (resumable)
      adapter/                 the final adapter (adapter_config.json, adapter_model.safetensors)
      tensorboard/             TensorBoard event files
      loss.png                 training and evaluation loss against step
      training_summary.json    what the export stage reads (written last)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from zhtw.pretrain.memory import MemoryEstimate, estimate_memory, model_shape, render_estimate
from zhtw.pretrain.train_config import ConfigError, TrainConfig, build_parser, load_config

__all__ = [
    "SUMMARY_FILE",
    "SUMMARY_FORMAT",
    "TokenizerMismatchError",
    "TrainError",
    "check_tokenizer",
    "dry_run",
    "estimate_for_config",
    "main",
    "train",
]

SUMMARY_FILE = "training_summary.json"
SUMMARY_FORMAT = "zhtw-train/1"
ADAPTER_DIR = "adapter"
TENSORBOARD_DIR = "tensorboard"
LOSS_PLOT = "loss.png"


class TrainError(RuntimeError):
    """Training cannot start or continue; the message says what to do."""


class TokenizerMismatchError(TrainError):
    """The tokenizer does not belong to the prepared model's embeddings."""


# --------------------------------------------------------------------------------------------------------------
# prepared model metadata and the tokenizer check


def _prepare_metadata(model_path: str) -> dict[str, Any]:
    from zhtw.pretrain.prepare import NotPreparedError, load_prepare_metadata

    try:
        return load_prepare_metadata(model_path)
    except NotPreparedError as exc:
        raise TrainError(str(exc)) from exc


def _model_config(model_path: str) -> dict[str, Any]:
    path = Path(model_path) / "config.json"
    if not path.is_file():
        raise TrainError(
            f"{model_path} has no config.json; model_path must be the directory written by `zhtw-pretrain prepare`."
        )
    return json.loads(path.read_text(encoding="utf-8"))


def check_tokenizer(model_path: str, tokenizer_path: str | None = None) -> dict[str, Any]:
    """Refuse a tokenizer that does not match the prepared model's embedding rows; return zhtw_prepare.json.

    Checks the tokenizer length against the rows the prepare stage sized for it and against
    ``config.vocab_size``, and ``tokenizer.model`` against the hash recorded by the prepare stage.
    """
    from zhtw.pretrain.data import load_tokenizer
    from zhtw.pretrain.prepare import sha256_file

    meta = _prepare_metadata(model_path)
    rows = int(_model_config(model_path)["vocab_size"])
    tok_dir = tokenizer_path or model_path
    tok = load_tokenizer(tok_dir)
    n = len(tok)
    rerun = (
        f"Rerun `zhtw-pretrain prepare --base {meta.get('base_model', 'BASE_MODEL')} --tokenizer TOKENIZER_DIR "
        f"--output {model_path} --overwrite` with the tokenizer you want to train with (the prepare stage sizes "
        "the embeddings for it), or set tokenizer_path to the tokenizer the model was prepared with "
        f"({meta.get('tokenizer_dir', 'see zhtw_prepare.json')})."
    )
    if n != int(meta["tokenizer_size"]) or n > rows:
        raise TokenizerMismatchError(
            f"tokenizer size mismatch: the tokenizer in {tok_dir} has {n} pieces, but the prepared model in "
            f"{model_path} was sized for {meta['tokenizer_size']} pieces ({rows} embedding rows). {rerun}"
        )
    sp = Path(tok_dir) / "tokenizer.model"
    if sp.is_file() and meta.get("tokenizer_sha256") and sha256_file(sp) != meta["tokenizer_sha256"]:
        raise TokenizerMismatchError(
            f"tokenizer mismatch: {sp} is not the tokenizer.model the prepared model in {model_path} was "
            f"initialised for (SHA-256 differs from zhtw_prepare.json). {rerun}"
        )
    return meta


# --------------------------------------------------------------------------------------------------------------
# dry run


def estimate_for_config(config: TrainConfig, *, block_size: int | None = None) -> MemoryEstimate:
    """The memory estimate of a config, from the prepared dir's config.json (no model is built)."""
    m, t = config.model, config.training
    cfg = _model_config(m.model_path)
    new_rows = 0
    meta_path = Path(m.model_path) / "zhtw_prepare.json"
    if meta_path.is_file():
        first, last = json.loads(meta_path.read_text(encoding="utf-8"))["new_token_ids"]
        new_rows = last - first
    return estimate_memory(
        model_shape(cfg),
        block_size=block_size or config.data.block_size,
        micro_batch=t.per_device_train_batch_size,
        quantization=m.quantization,
        double_quant=m.double_quant,
        compute_dtype=m.compute_dtype,
        lora_r=config.lora.lora_r,
        lora_target_modules=config.lora.lora_target_modules,
        lora_dropout=config.lora.lora_dropout,
        trainable_embeddings=m.trainable_embeddings,
        new_rows=new_rows,
        trainable_norms=m.trainable_norms,
        gradient_checkpointing=bool(t.activation_checkpointing),
        loss_chunk_tokens=m.loss_chunk_tokens,
    )


def dry_run(config: TrainConfig) -> str:
    """The `--dry-run` report: parameter counts and estimated peak GPU memory for the config."""
    est = estimate_for_config(config)
    t = config.training
    title = (
        f"dry run: {config.model.model_path} | {config.model.quantization}, LoRA r={config.lora.lora_r}, "
        f"embeddings={config.model.trainable_embeddings}, block {config.data.block_size} x micro batch "
        f"{t.per_device_train_batch_size}, checkpointing {'on' if t.activation_checkpointing else 'off'}, "
        f"S²-Attn {'on' if config.s2.s2attn else 'off'}"
    )
    return render_estimate(est, gpu_memory_gb=config.run.gpu_memory_gb, title=title)


# --------------------------------------------------------------------------------------------------------------
# model


def _compute_dtype(config: TrainConfig, on_cpu: bool) -> Any:
    import torch

    if on_cpu:
        return torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[
        config.model.compute_dtype
    ]


def _quantization_plan(
    config: TrainConfig, on_cpu: bool, model_cfg: dict[str, Any]
) -> tuple[str, str | None]:
    """("nf4" | "none", a note when the requested quantization was changed)."""
    if config.model.quantization == "none":
        return "none", None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise TrainError(
            "quantization: nf4 needs bitsandbytes: `pip install 'bitsandbytes>=0.45'` (or set quantization: none)."
        ) from exc
    if on_cpu and not config.run.allow_cpu_4bit:
        return "none", "nf4 on CPU disabled by allow_cpu_4bit=false: training LoRA on a full-precision base"
    if on_cpu:
        sizes = {
            "intermediate_size": int(model_cfg["intermediate_size"]),
            "hidden_size": int(model_cfg["hidden_size"]),
        }
        odd = {k: v for k, v in sizes.items() if v % 32}
        if odd:
            return "none", (
                f"bitsandbytes' CPU 4-bit kernels need layer widths divisible by 32, this model has {odd}: "
                "training LoRA on a full-precision base instead (set quantization: none to silence this)"
            )
    return "nf4", None


def load_base_model(config: TrainConfig, quantization: str, on_cpu: bool) -> Any:
    """Load the prepared model, NF4-quantised or in full precision; trainable embedding matrices in float32."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = _compute_dtype(config, on_cpu)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": "sdpa"}
    if quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=config.model.double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
        if not on_cpu:
            kwargs["device_map"] = {"": _local_device()}
    model = AutoModelForCausalLM.from_pretrained(config.model.model_path, **kwargs)
    if quantization == "nf4":
        from bitsandbytes.nn import Linear4bit

        for module in model.modules():
            if isinstance(module, Linear4bit):
                # repacking for AVX512-BF16 during no-grad eval corrupts later backward passes (GUIDE §3)
                module.support_avx512bf16_for_cpu = False
    if config.model.trainable_embeddings != "none":
        # bf16 rows would round lr-5e-5 updates away; trainable rows live in these matrices
        model.get_input_embeddings().to(torch.float32)
        model.get_output_embeddings().to(torch.float32)
    model.config.use_cache = False
    return model


def _local_device() -> Any:
    import torch

    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def peft_config(config: TrainConfig, meta: dict[str, Any], tied: bool) -> Any:
    """The LoraConfig for the chosen LoRA targets, trainable embeddings and norms."""
    from peft import LoraConfig

    lora, m = config.lora, config.model
    targets: Any = lora.lora_target_modules
    if any(t in ("all-linear", "all_linear") for t in targets):
        targets = "all-linear"
    modules_to_save: list[str] = []
    kwargs: dict[str, Any] = {}
    if m.trainable_embeddings == "new_rows":
        first, last = meta["new_token_ids"]
        ids = list(range(int(first), int(last)))
        if not ids:
            raise TrainError(
                f"trainable_embeddings: new_rows, but {m.model_path} has no new tokens "
                "(zhtw_prepare.json new_token_ids is empty); use trainable_embeddings: none."
            )
        # a list trains the input rows and peft ties the head to them; untied models need both named
        kwargs["trainable_token_indices"] = ids if tied else {"embed_tokens": ids, "lm_head": ids}
    elif m.trainable_embeddings == "full":
        modules_to_save += ["embed_tokens", "lm_head"]
        if tied:
            kwargs["ensure_weight_tying"] = True
    if m.trainable_norms:
        modules_to_save += ["input_layernorm", "post_attention_layernorm", "norm"]
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=targets,
        modules_to_save=modules_to_save or None,
        **kwargs,
    )


def build_model(config: TrainConfig, meta: dict[str, Any], quantization: str, on_cpu: bool) -> Any:
    """Base model + LoRA + trainable rows (+ S²-Attn), ready for the Trainer."""
    from peft import get_peft_model

    model = load_base_model(config, quantization, on_cpu)
    tied = bool(model.config.tie_word_embeddings)
    model = get_peft_model(model, peft_config(config, meta, tied))
    if config.s2.s2attn:
        from zhtw.pretrain.s2attn import enable_s2_attention

        enable_s2_attention(model, group_ratio=config.s2.s2attn_ratio, variant=config.s2.s2attn_variant)
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit weights count as their unpacked number of elements."""
    trainable, total = 0, 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n = (
                int(math.prod(getattr(p, "quant_state", None).shape))
                if getattr(p, "quant_state", None)
                else 2 * n
            )
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


# --------------------------------------------------------------------------------------------------------------
# trainer


def _trainer_classes() -> tuple[type, type, type]:
    """The Trainer subclass and callbacks (defined lazily so --help and --dry-run need no torch)."""
    import torch
    from transformers import Trainer, TrainerCallback

    from zhtw.pretrain.loss import chunked_causal_lm_loss, liger_fused_available

    class ZhtwTrainer(Trainer):
        """Trainer whose loss runs the decoder, then the output head chunk by chunk (no full fp32 logits)."""

        loss_is_scaled_for_ga = False  # compute_loss returns the mean over the micro batch

        def __init__(
            self, *args: Any, loss_chunk_tokens: int = 1024, fused_loss: bool = True, **kwargs: Any
        ) -> None:
            super().__init__(*args, **kwargs)
            self.loss_chunk_tokens = loss_chunk_tokens
            self.model_accepts_loss_kwargs = False
            self.fused = None
            head = self.model.get_output_embeddings()
            if fused_loss and liger_fused_available() and type(head) is torch.nn.Linear:
                from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

                self.fused = LigerFusedLinearCrossEntropyLoss()

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            labels = inputs["labels"]
            # through the (possibly DDP-wrapped) model, so gradient synchronisation sees the forward;
            # logits only for the last position, the loss below projects the hidden states in chunks
            outputs = model(
                input_ids=inputs["input_ids"], output_hidden_states=True, logits_to_keep=1, use_cache=False
            )
            hidden = outputs.hidden_states[-1]
            head = self.accelerator.unwrap_model(model).get_output_embeddings()
            if self.fused is not None and model.training:  # liger: plain head only (no trainable rows)
                targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100).reshape(-1)
                loss = self.fused(head.weight, hidden.reshape(-1, hidden.shape[-1]), targets)
            else:
                loss = chunked_causal_lm_loss(hidden, head, labels, chunk_tokens=self.loss_chunk_tokens)
            return (loss, {"loss": loss}) if return_outputs else loss

    class StopAtLossCallback(TrainerCallback):
        """Stop (and save) when the logged training loss reaches a threshold."""

        def __init__(self, threshold: float) -> None:
            self.threshold = threshold

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
        ) -> None:
            if logs and "loss" in logs and logs["loss"] <= self.threshold:
                print(
                    f"stop_at_loss: training loss {logs['loss']:.4f} <= {self.threshold}; stopping",
                    flush=True,
                )
                control.should_training_stop = True
                control.should_save = True

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
        return {"input_ids": ids, "labels": ids}

    return ZhtwTrainer, StopAtLossCallback, collate


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration of the block."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _checksum(model: Any) -> float:
    return float(sum(p.detach().double().sum().item() for p in model.parameters() if p.requires_grad))


def _resume_path(resume: str | None, output_dir: str) -> str | None:
    if not resume or resume.lower() in ("false", "no", "none"):
        return None
    if resume.lower() in ("true", "last", "auto"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None and resume.lower() != "auto":
            raise TrainError(
                f"resume_from_checkpoint={resume}, but {output_dir} holds no checkpoint-N directory."
            )
        return last
    if not Path(resume).is_dir():
        raise TrainError(
            f"resume_from_checkpoint {resume} is not a directory; pass a checkpoint-N directory or 'last'."
        )
    return resume


def _report_to(requested: list[str] | str | None) -> list[str]:
    wanted = [requested] if isinstance(requested, str) else list(requested or [])
    if "tensorboard" in wanted:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            print(
                "warning: TensorBoard logging is off because tensorboard is not installed "
                "(`pip install tensorboard`); losses still go to the console, loss.png and training_summary.json.",
                file=sys.stderr,
            )
            wanted.remove("tensorboard")
    # assigned after TrainingArguments.__post_init__, which is what turns "none" into []
    return [w for w in wanted if w != "none"]


def train(config: TrainConfig) -> dict[str, Any]:
    """Run the training described by ``config``; return the summary written to training_summary.json."""
    import torch
    from transformers import set_seed

    from zhtw.pretrain.data import build_packed_data

    started = time.time()
    args = config.training
    out = Path(args.output_dir)
    on_cpu = bool(args.use_cpu) or not torch.cuda.is_available()
    if config.data.streaming and args.max_steps <= 0:
        raise TrainError(
            "streaming: true has no dataset length to count epochs by; set max_steps (e.g. --max_steps 10000)."
        )
    meta = check_tokenizer(config.model.model_path, config.model.tokenizer_path)
    model_cfg = _model_config(config.model.model_path)

    # Trainer settings this pipeline relies on
    args.remove_unused_columns = False
    args.prediction_loss_only = True
    args.report_to = _report_to(args.report_to)
    if args.activation_checkpointing and not args.activation_checkpointing_kwargs:
        args.activation_checkpointing_kwargs = {"use_reentrant": False}
        args.gradient_checkpointing_kwargs = args.activation_checkpointing_kwargs

    with args.main_process_first(desc="tokenise and pack"):
        data = build_packed_data(
            config.data.data_files,
            config.model.tokenizer_path or config.model.model_path,
            config.data.block_size,
            cache_dir=config.data.data_cache_dir or str(out.parent / "data_cache"),
            eval_fraction=config.data.eval_fraction,
            eval_max_docs=config.data.eval_max_docs,
            seed=args.seed,
            streaming=config.data.streaming,
            text_key=config.data.text_key,
            num_proc=config.data.tokenize_num_proc,
        )
    if data.eval is None and args.eval_strategy != "no":
        print("note: no held-out documents (eval_fraction=0); evaluation is off.", file=sys.stderr)
        args.eval_strategy = "no"
        args.eval_on_start = False

    quantization, note = _quantization_plan(config, on_cpu, model_cfg)
    if note:
        print(f"note: {note}.", file=sys.stderr)
    set_seed(args.seed)  # LoRA initialisation is random
    model = build_model(config, meta, quantization, on_cpu)
    trainable, total = count_parameters(model)
    print(f"parameters: {trainable:,} trainable of {total:,} ({100 * trainable / total:.2f}%)", flush=True)

    ZhtwTrainer, StopAtLoss, collate = _trainer_classes()
    callbacks = [StopAtLoss(config.run.stop_at_loss)] if config.run.stop_at_loss is not None else []
    tb_dir = os.environ.get("TENSORBOARD_LOGGING_DIR") or str(out / TENSORBOARD_DIR)
    with _env("TENSORBOARD_LOGGING_DIR", tb_dir):  # TensorBoardCallback's documented setting, read at init
        trainer = ZhtwTrainer(
            model=model,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            data_collator=collate,
            callbacks=callbacks,
            loss_chunk_tokens=config.model.loss_chunk_tokens,
            fused_loss=config.model.use_fused_loss,
        )
    resume = _resume_path(args.resume_from_checkpoint, args.output_dir)
    result = trainer.train(resume_from_checkpoint=resume)
    eval_metrics = trainer.evaluate() if data.eval is not None else {}
    if trainer.args.world_size > 1:  # data parallel ranks must end with identical weights
        print(f"rank {trainer.args.process_index}: trainable checksum {_checksum(model):.10e}", flush=True)

    summary: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        trainer.save_model(str(out / ADAPTER_DIR))
        summary = _summary(
            config,
            meta,
            data.stats,
            trainer,
            result,
            eval_metrics,
            quantization,
            note,
            trainable,
            total,
            started,
        )
        _plot_losses(trainer.state.log_history, out / LOSS_PLOT)
        tmp = out / f".{SUMMARY_FILE}.tmp"
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(tmp, out / SUMMARY_FILE)
        print(f"wrote {out / ADAPTER_DIR}, {out / LOSS_PLOT} and {out / SUMMARY_FILE}", flush=True)
    trainer.accelerator.wait_for_everyone()
    return summary


# --------------------------------------------------------------------------------------------------------------
# outputs


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in (
        "zhtw",
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "datasets",
        "bitsandbytes",
        "liger-kernel",
    ):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _ppl(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 50 else float("inf")


def _summary(
    config: TrainConfig,
    meta: dict[str, Any],
    data_stats: dict[str, Any],
    trainer: Any,
    result: Any,
    eval_metrics: dict[str, float],
    quantization: str,
    note: str | None,
    trainable: int,
    total: int,
    started: float,
) -> dict[str, Any]:
    args, state = config.training, trainer.state
    history = state.log_history
    train_losses = [h for h in history if "loss" in h]
    eval_losses = [h for h in history if "eval_loss" in h]
    world = trainer.args.world_size
    tokens_per_step = (
        args.per_device_train_batch_size * args.gradient_accumulation_steps * world * config.data.block_size
    )
    final_eval = eval_metrics.get("eval_loss")
    out = Path(args.output_dir).resolve()
    return {
        "format": SUMMARY_FORMAT,
        "prepared_model": str(Path(config.model.model_path).resolve()),
        "prepare_metadata": meta,
        "tokenizer_path": str(Path(config.model.tokenizer_path or config.model.model_path).resolve()),
        "adapter_path": str(out / ADAPTER_DIR),
        "adapter_dir": ADAPTER_DIR,
        "config_file": config.source,
        "options": config.flat(),
        "training_args": trainer.args.to_dict(),
        "quantization": quantization,
        "quantization_note": note,
        "trainable_embeddings": config.model.trainable_embeddings,
        "trainable_token_ids": meta.get("new_token_ids")
        if config.model.trainable_embeddings == "new_rows"
        else None,
        "tie_word_embeddings": bool(meta.get("tie_word_embeddings")),
        "s2attn": {
            "enabled": config.s2.s2attn,
            "ratio": config.s2.s2attn_ratio,
            "variant": config.s2.s2attn_variant,
            "note": "training only; evaluation and the exported model use full attention",
        },
        "parameters": {"trainable": trainable, "total": total},
        "data": data_stats,
        "world_size": world,
        "global_steps": state.global_step,
        "epochs": state.epoch,
        "tokens_per_step": tokens_per_step,
        "tokens_seen": state.global_step * tokens_per_step,
        "final": {
            "train_loss": train_losses[-1]["loss"] if train_losses else None,
            "train_loss_mean": result.training_loss,
            "eval_loss": final_eval,
            "eval_perplexity": _ppl(final_eval),
            "first_eval_loss": eval_losses[0]["eval_loss"] if eval_losses else None,
        },
        "log_history": history,
        "memory_estimate": estimate_for_config(config).to_dict(),
        "time": {
            "seconds": round(time.time() - started, 2),
            "train_runtime": result.metrics.get("train_runtime"),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        "versions": _versions(),
        "files": {
            "adapter": ADAPTER_DIR,
            "loss_plot": LOSS_PLOT,
            "tensorboard": None,  # filled in by train()
        },
    }


def _plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    """loss.png: training and evaluation loss against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("zhtw continued pretraining")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> None:
    """`zhtw-pretrain train [CONFIG.yaml] [--key value ...]` (see --help)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        build_parser().print_help()
        raise SystemExit(0)
    argv = ["--dry_run" if a == "--dry-run" else a for a in argv]
    try:
        config = load_config(argv)
        if config.run.dry_run:
            print(dry_run(config))
            return
        train(config)
    except (ConfigError, TrainError) as exc:
        print(f"zhtw-pretrain train: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except Exception as exc:
        from zhtw.pretrain.data import DataError
        from zhtw.pretrain.prepare import PrepareError

        if not isinstance(exc, (DataError, PrepareError)):
            raise
        print(f"zhtw-pretrain train: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
