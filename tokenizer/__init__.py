"""Stage 2: extend a Llama SentencePiece tokenizer with a Traditional Chinese vocabulary."""
