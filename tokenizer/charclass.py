"""Which characters count as Chinese for vocabulary filtering and statistics.

A new piece is added (by default) only if it holds at least one of these characters, so text without
them, such as English, code and numbers, cannot reach any new piece and tokenises exactly as before.
"""

from __future__ import annotations

import re

# Han ideographs (unified, extensions, compatibility), radicals, strokes, ideographic description.
_HAN = (
    (0x2E80, 0x2FDF),  # CJK radicals supplement, Kangxi radicals
    (0x2FF0, 0x2FFF),  # ideographic description characters
    (0x31C0, 0x31EF),  # CJK strokes
    (0x3400, 0x4DBF),  # extension A
    (0x4E00, 0x9FFF),  # unified ideographs
    (0xF900, 0xFAFF),  # compatibility ideographs
    (0x20000, 0x2FA1F),  # extensions B-F, compatibility supplement
    (0x30000, 0x323AF),  # extensions G-H
)
# Bopomofo (Taiwan phonetic symbols), CJK and full-width punctuation and forms.
_ZH_OTHER = (
    (0x3000, 0x303F),  # CJK symbols and punctuation (、。「」『』〈〉《》【】 and the ideographic space)
    (0x3100, 0x312F),  # Bopomofo
    (0x31A0, 0x31BF),  # Bopomofo extended
    (0x3200, 0x32FF),  # enclosed CJK letters and months
    (0xFE10, 0xFE1F),  # vertical forms
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFFEF),  # half-width and full-width forms (，！？：；（）０-９Ａ-Ｚ)
)


def _class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)


_HAN_RE = re.compile(f"[{_class(_HAN)}]")
_ZH_RE = re.compile(f"[{_class(_HAN + _ZH_OTHER)}]")


def _in(ranges: tuple[tuple[int, int], ...], cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def is_han(ch: str) -> bool:
    """A Han ideograph (any CJK ideograph block)."""
    return _in(_HAN, ord(ch))


def is_zh_char(ch: str) -> bool:
    """Han, Bopomofo, CJK or full-width punctuation/forms."""
    cp = ord(ch)
    return _in(_HAN, cp) or _in(_ZH_OTHER, cp)


def has_zh(text: str) -> bool:
    """Whether any character of `text` is Chinese in the sense of `is_zh_char`."""
    return _ZH_RE.search(text) is not None


def count_han(text: str) -> int:
    """Number of Han ideographs in `text`."""
    return len(_HAN_RE.findall(text))
