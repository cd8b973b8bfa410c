"""Script detection (Traditional / Simplified / mixed / none) and OpenCC conversion to zh-TW.

The detector counts characters that exist in only one script. The two sets are derived once per
process from OpenCC's own tables (:func:`script_tables`):

* a candidate Simplified-only character is one that OpenCC ``s2t`` changes and ``t2s`` leaves
  alone (and vice versa for Traditional-only);
* one-to-many characters are resolved with the dictionaries' values: a candidate that OpenCC
  itself may *output* when converting to Traditional (``后`` in 皇后, ``里`` in 公里, ``干`` in 干涉,
  ``台``, ``面`` ...) is a valid Traditional character and is not Simplified-only; likewise a
  candidate that ``t2s`` may output (``乾`` in 乾坤, ``於`` as a surname) is not Traditional-only.

So every Simplified-only character is one that ``s2tw``/``s2twp`` always replaces: after
conversion no Simplified-only character is left. Counting uses one compiled character-class regex
per set (≈100 MB/s of UTF-8 Chinese per core).

Conversion never runs ``s2t*`` on Traditional text: ``s2twp`` rewrites Traditional vocabulary into
Taiwan phrasing by rules meant for Simplified input (對象→物件 on 3% of characters).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import opencc

logger = logging.getLogger(__name__)

LABELS = ("traditional", "simplified", "mixed", "none")
ACTIONS = ("s2twp", "s2tw", "t2tw", "none")
ORIGINS = ("native", "converted", "simplified", "mixed", "none")
"""Where a document's text comes from: ``native`` Traditional, ``converted`` from Simplified (or
the Simplified lines of a mixed page), or left as detected (``simplified``/``mixed`` when not
converted, ``none`` when no script-specific character decides)."""

PHRASE_OVERRIDES_PATH = Path(__file__).with_name("data") / "tw_phrase_overrides.tsv"

# BMP CJK Unified Ideographs and Extension A. Extensions B+ add ~1,500 script-specific characters,
# all rare; astral ranges in the character classes would halve the scanning speed.
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF))

# Dictionaries whose values can appear in s2tw/s2twp output, and in t2s output.
_TO_TRADITIONAL_DICTS = (
    "STCharacters",
    "STPhrases",
    "STPhrases_GeneratedFromRegionalPhrases",
    "TWVariants",
    "TWVariantsPhrases",
    "TWPhrases",
)
_TO_SIMPLIFIED_DICTS = ("TSCharacters", "TSPhrases")


def opencc_share_dir() -> str:
    """Folder holding the installed OpenCC configs and ``.ocd2`` dictionaries."""
    return getattr(
        opencc, "_opencc_share_dir", os.path.join(os.path.dirname(opencc.__file__), "clib", "share", "opencc")
    )


def _ocd2_values_section(data: bytes) -> tuple[int, int, list[list[int]]]:
    """(start, buffer length, byte lengths per entry) of the values section of an ``.ocd2`` file.

    The file is a marisa trie of keys followed by OpenCC's serialised values: ``uint32 count``,
    ``uint32 buffer length``, the NUL-terminated UTF-8 values, then per entry ``uint16 n`` and
    ``n`` ``uint16`` byte lengths. The trie is not needed: the section is the one position from
    which the whole rest of the file parses exactly (candidates are pre-filtered with numpy).
    """
    size = len(data)
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    n = size - 8
    u32 = raw[0:n] | raw[1 : n + 1] << 8 | raw[2 : n + 2] << 16 | raw[3 : n + 3] << 24
    count, length = u32[: n - 4], u32[4:n]
    start = np.arange(n - 4)
    end = start + 8 + length
    plausible = (count > 0) & (end <= size) & (size - end >= 4 * count)
    for pos in np.flatnonzero(plausible)[::-1]:
        pos, end_pos = int(pos), int(end[pos])
        if data[end_pos - 1] != 0:
            continue
        groups = _parse_value_lengths(data, end_pos, int(count[pos]))
        if groups is not None and sum(map(sum, groups)) == int(length[pos]):
            return pos, int(length[pos]), groups
    raise ValueError("no OpenCC values section found (unsupported .ocd2 layout)")


def read_ocd2_values(path: str | os.PathLike[str]) -> list[list[str]]:
    """Value lists (first = OpenCC's default choice) of a compiled OpenCC ``.ocd2`` dictionary."""
    with open(path, "rb") as f:
        data = f.read()
    start, length, groups = _ocd2_values_section(data)
    buf = data[start + 8 : start + 8 + length]
    out, offset = [], 0
    for group in groups:
        values = []
        for n in group:
            values.append(buf[offset : offset + n - 1].decode("utf-8"))
            offset += n
        out.append(values)
    return out


def _parse_value_lengths(data: bytes, pos: int, count: int) -> list[list[int]] | None:
    size = len(data)
    groups = []
    for _ in range(count):
        if pos + 2 > size:
            return None
        (n,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if pos + 2 * n > size:
            return None
        groups.append(list(struct.unpack_from(f"<{n}H", data, pos)))
        pos += 2 * n
    return groups if pos == size else None


@dataclass(frozen=True)
class ScriptTables:
    """Characters that occur in only one script, and regexes that count them."""

    simplified_only: frozenset[str]
    traditional_only: frozenset[str]
    simplified_re: re.Pattern[str]
    traditional_re: re.Pattern[str]


def _char_class(chars: frozenset[str]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]")


@lru_cache(maxsize=8)
def _dict_chars(names: tuple[str, ...]) -> frozenset[str]:
    """Every character in the values of the named OpenCC dictionaries."""
    share = opencc_share_dir()
    chars: set[str] = set()
    for name in names:
        with open(os.path.join(share, name + ".ocd2"), "rb") as f:
            data = f.read()
        start, length, _ = _ocd2_values_section(data)
        chars.update(data[start + 8 : start + 8 + length].decode("utf-8"))
    chars.discard("\0")
    return frozenset(chars)


@lru_cache(maxsize=1)
def script_tables() -> ScriptTables:
    """Build the Simplified-only / Traditional-only sets from OpenCC (once per process, ≈0.3 s)."""
    chars = [chr(c) for lo, hi in _CJK_RANGES for c in range(lo, hi + 1)]
    joined = "\n".join(chars)
    to_trad = opencc.OpenCC("s2t").convert(joined).split("\n")
    to_simp = opencc.OpenCC("t2s").convert(joined).split("\n")
    if not len(to_trad) == len(to_simp) == len(chars):
        raise RuntimeError("OpenCC did not convert the CJK code points one to one; cannot build script sets")
    simp = {c for c, t, s in zip(chars, to_trad, to_simp) if t != c and s == c}
    trad = {c for c, t, s in zip(chars, to_trad, to_simp) if s != c and t == c}
    try:
        simp -= _dict_chars(_TO_TRADITIONAL_DICTS)
        trad -= _dict_chars(_TO_SIMPLIFIED_DICTS)
    except (OSError, ValueError) as exc:  # another OpenCC build: fall back to the plain round trip
        logger.warning("OpenCC dictionaries unreadable (%s); script sets include one-to-many characters", exc)
    s, t = frozenset(simp), frozenset(trad)
    return ScriptTables(s, t, _char_class(s), _char_class(t))


@lru_cache(maxsize=1)
def common_han_chars() -> frozenset[str]:
    """Han characters of everyday vocabulary, both scripts: those in OpenCC's phrase and character
    dictionaries (about 10k). In correctly decoded Chinese ≤ 8% of Han characters fall outside
    it (classical poetry up to ~10%); text decoded with the wrong codec (UTF-8 read as GBK, Big5
    read as GBK) has 15-70% outside it."""
    trad = {c for c in _dict_chars(_TO_TRADITIONAL_DICTS + _TO_SIMPLIFIED_DICTS) if "\u3400" <= c <= "\u9fff"}
    simp = set(opencc.OpenCC("t2s").convert("".join(sorted(trad))))
    return frozenset(trad | simp)


@dataclass(frozen=True)
class ScriptResult:
    """Detected script and the evidence: counts of Simplified-only and Traditional-only characters."""

    label: str
    simplified: int
    traditional: int


def detect_script(text: str, min_ratio: float = 0.9, min_chars: int = 1) -> ScriptResult:
    """Label ``text`` "traditional", "simplified", "mixed" or "none".

    ``none``: fewer than ``min_chars`` script-specific characters (no Chinese, or only characters
    shared by both scripts). Otherwise the label is the script owning at least ``min_ratio`` of
    the script-specific characters, and ``mixed`` when neither does.
    """
    tables = script_tables()
    simplified = len(tables.simplified_re.findall(text))
    traditional = len(tables.traditional_re.findall(text))
    total = simplified + traditional
    if total < min_chars:
        label = "none"
    elif simplified >= min_ratio * total:
        label = "simplified"
    elif traditional >= min_ratio * total:
        label = "traditional"
    else:
        label = "mixed"
    return ScriptResult(label, simplified, traditional)


def _run_opencc(cc: Any, text: str) -> str:
    """OpenCC conversion that loses nothing: OpenCC stops at a NUL character (the rest of the
    text would silently vanish), so NUL-separated parts are converted one by one; lone
    surrogates (from broken JSON escapes) cannot be encoded for OpenCC and are dropped."""
    if "\0" in text:
        return "\0".join(_run_opencc(cc, part) for part in text.split("\0"))
    try:
        return cc.convert(text)
    except UnicodeEncodeError:
        return cc.convert(text.encode("utf-8", "ignore").decode("utf-8"))


def origin_of(script_label: str, action: str) -> str:
    """The origin recorded for a document (see :data:`ORIGINS`)."""
    if action in ("s2twp", "s2tw"):
        return "converted"
    return "native" if script_label == "traditional" else script_label


def load_phrase_overrides(path: str | os.PathLike[str] = PHRASE_OVERRIDES_PATH) -> dict[str, str]:
    """{phrase: replacement} from the overrides table (``#`` comments, tab-separated columns)."""
    table: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0] or not cols[1]:
            raise ValueError(f"{path}, line {n}: expected 'phrase<TAB>replacement', got {line!r}")
        table[cols[0]] = cols[1]
    return table


def s2twp_with_overrides(overrides: dict[str, str]) -> Any:
    """OpenCC ``s2twp`` whose Taiwan-phrase step first looks phrases up in ``overrides``.

    Uses OpenCC's own extension point: a config equal to the installed ``s2twp.json`` with a text
    dictionary put first in the phrase step's short-circuit group, so an override wins where it
    matches and OpenCC's longest-match segmentation is unchanged elsewhere. The generated files
    are only needed while OpenCC loads them.
    """
    share = opencc_share_dir()
    with open(os.path.join(share, "s2twp.json"), encoding="utf-8") as f:
        config = json.load(f)
    _absolute_dict_paths(config, share)
    with tempfile.TemporaryDirectory(prefix="zhtw-opencc-") as tmp:
        dict_path = os.path.join(tmp, "overrides.txt")
        with open(dict_path, "w", encoding="utf-8") as f:
            f.writelines(f"{k}\t{v}\n" for k, v in sorted(overrides.items()))
        phrase_step = config["conversion_chain"][1]["dict"]["dicts"]
        phrase_step.insert(0, {"type": "text", "file": dict_path})
        config_path = os.path.join(tmp, "s2twp_zhtw.json")
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False)
        return opencc.OpenCC(config_path)


def _absolute_dict_paths(node: Any, share: str) -> None:
    """Make every ``ocd2`` file of an OpenCC config absolute (the config moves to a temp dir)."""
    if isinstance(node, dict):
        if node.get("type") == "ocd2":
            node["file"] = os.path.join(share, node["file"])
        for value in node.values():
            _absolute_dict_paths(value, share)
    elif isinstance(node, list):
        for value in node:
            _absolute_dict_paths(value, share)


class Converter:
    """Converts detected-Simplified text to Taiwan Traditional with OpenCC; picklable.

    Rules, by detected label:

    * ``simplified`` -> the configured converter (``s2twp``: Taiwan characters and phrases,
      软件→軟體; ``s2tw``: characters only; ``off``: untouched).
    * ``traditional`` -> ``t2tw`` (Taiwan variant characters) if ``normalize_traditional``, else
      untouched. Never ``s2t*``: ``s2twp`` would rewrite Traditional vocabulary (對象→物件).
    * ``mixed`` -> if ``convert_mixed`` and conversion is not ``off``: ``s2tw`` line by line, on
      the lines that contain a Simplified-only character; the other lines are left untouched.
      Mixed pages are mostly Traditional and Simplified parts side by side (quotes, bilingual
      menus, a Simplified comment thread), so the Traditional lines keep every character (even
      ``s2tw`` changes 0.3% of Traditional characters: 里長→裡長, 了解→瞭解), no Simplified-only
      character is left, and ``s2twp``'s phrase rewriting is kept for text known to be Simplified.
      Otherwise untouched.
    * ``none`` -> untouched.

    With ``phrase_overrides`` (a {phrase: replacement} table, see ``data/tw_phrase_overrides.tsv``)
    ``s2twp`` leaves the listed phrases as the character step wrote them (分區, not 分割槽).

    OpenCC objects cannot be pickled, so they are created on first use in each process and
    dropped when the converter is pickled.
    """

    def __init__(
        self,
        convert: str = "s2twp",
        normalize_traditional: bool = False,
        convert_mixed: bool = True,
        phrase_overrides: dict[str, str] | None = None,
    ):
        if convert not in ("s2twp", "s2tw", "off"):
            raise ValueError(f"convert must be 's2twp', 's2tw' or 'off', got {convert!r}")
        self.convert_to = convert
        self.normalize_traditional = normalize_traditional
        self.convert_mixed = convert_mixed
        self.phrase_overrides = dict(phrase_overrides or {})
        self._opencc: dict[str, Any] = {}

    def _cc(self, action: str) -> Any:
        cc = self._opencc.get(action)
        if cc is None:
            if action == "s2twp" and self.phrase_overrides:
                cc = s2twp_with_overrides(self.phrase_overrides)
            else:
                cc = opencc.OpenCC(action)
            self._opencc[action] = cc
        return cc

    def action_for(self, script_label: str) -> str:
        """What :meth:`convert` does for a document with this label: an entry of ``ACTIONS``."""
        if script_label == "simplified" and self.convert_to != "off":
            return self.convert_to
        if script_label == "mixed" and self.convert_mixed and self.convert_to != "off":
            return "s2tw"
        if script_label == "traditional" and self.normalize_traditional:
            return "t2tw"
        if script_label not in LABELS:
            raise ValueError(f"unknown script label {script_label!r}; expected one of {LABELS}")
        return "none"

    def convert(self, text: str, script_label: str) -> tuple[str, str]:
        """Return (converted text, action taken); the action is one of ``ACTIONS``."""
        action = self.action_for(script_label)
        if action == "none" or not text:
            return text, action
        cc = self._cc(action)
        if script_label != "mixed":
            return _run_opencc(cc, text), action
        has_simplified = script_tables().simplified_re.search
        lines = [_run_opencc(cc, line) if has_simplified(line) else line for line in text.split("\n")]
        return "\n".join(lines), action

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_opencc"] = {}
        return state

    def __repr__(self) -> str:
        return (
            f"Converter(convert={self.convert_to!r}, normalize_traditional={self.normalize_traditional}, "
            f"convert_mixed={self.convert_mixed}, phrase_overrides={len(self.phrase_overrides)})"
        )
