"""Typed errors of the tokenizer stage; each message says what to do about it."""

from __future__ import annotations

from zhtw.common.errors import ZhtwError


class TokenizerStageError(ZhtwError):
    """Base class: anything `zhtw-tok` refuses or cannot do, with the fix in the message."""


class UsageError(TokenizerStageError):
    """A command-line value is out of range or inconsistent (the CLI exits with status 2)."""


class UnsupportedBaseError(TokenizerStageError):
    """The base tokenizer is not a SentencePiece BPE model with byte fallback."""


class CorruptModelError(UnsupportedBaseError):
    """A tokenizer.model parses (or not) but is damaged: invalid pieces, scores or special ids."""


class CorpusTooSmallError(TokenizerStageError):
    """The corpus cannot supply enough new pieces for the requested vocabulary size."""


class OutputExistsError(TokenizerStageError):
    """The output directory holds a different build; refusing to overwrite it silently."""


class MetadataError(TokenizerStageError):
    """zhtw_tokenizer.json is missing, empty, not JSON or not in the expected format."""


class VerificationError(TokenizerStageError):
    """An invariant of the extended tokenizer does not hold; carries the offending example."""

    def __init__(self, invariant: str, message: str, example: str | None = None) -> None:
        self.invariant = invariant
        self.example = example
        text = f"[{invariant}] {message}"
        if example is not None:
            shown = example if len(example) <= 300 else example[:300] + "…"
            text += f"\n  offending example: {shown!r}"
        super().__init__(text)
