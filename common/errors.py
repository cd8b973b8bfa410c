"""The one error base of zhtw: every stage's refusals derive from `ZhtwError` and carry the fix."""

from __future__ import annotations


class ZhtwError(Exception):
    """Anything a zhtw command refuses or cannot do; the message names the file and the fix."""


class OutputError(ZhtwError):
    """An output directory cannot be used as asked (overlaps an input, locked, not ours, not a directory)."""
