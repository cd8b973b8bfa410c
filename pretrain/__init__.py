"""Stage 3: prepare the resized model, S²-Attn, and QLoRA continued pretraining."""
