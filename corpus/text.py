"""Chinese-aware cleaning and quality filters as plain functions (no pipeline engine needed).

* :func:`clean_text` fixes Unicode debris without NFKC: full-width punctuation (，。！？「」) and
  full-width letters stay exactly as written.
* :func:`remove_boilerplate_lines` drops navigation, cookie and copyright lines and short lines
  repeated within a page.
* Each quality check is ``(text, cfg) -> reason | None`` and is listed in :data:`FILTERS` in the
  order a pipeline should run them (cheap and most specific first), so each can be its own step.

Everything is built for throughput: compiled regexes and ``str`` methods instead of Python loops
over characters, numpy for the n-gram repetition check, and per-text statistics memoised so that
consecutive filters on the same string share the work.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from zhtw.corpus.config import CleanConfig, FilterConfig

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Character classes

HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HAN_RUN_RE = re.compile(f"[{HAN_CLASS}]+")
_WORD_RUN_RE = re.compile(r"[^\W_]+")


# The zero-width joiner glues emoji into one picture (👨‍👩‍👧 family, 🏳️‍🌈 rainbow flag, 🐈‍⬛): it is kept
# between two emoji (the first may carry the emoji variation selector U+FE0F or a skin tone) and
# removed everywhere else, like the other invisible characters. Emoji here: the pictographic
# blocks of Unicode (symbols, dingbats, arrows, the astral emoji planes), as Python's re has no
# Extended_Pictographic property.
_ZWJ_CP = 0x200D
_EMOJI_CLASS = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u21aa\u231a-\u23ff\u24c2\u25aa-\u27bf"
    "\u2934\u2935\u2b05-\u2b55\u3030\u303d\u3297\u3299\U0001f000-\U0001faff"
)
_STRAY_ZWJ_RE = re.compile(f"(?<![{_EMOJI_CLASS}\ufe0f])\u200d|\u200d(?![{_EMOJI_CLASS}])")


@lru_cache(maxsize=1)
def _invisible_re() -> re.Pattern[str]:
    """Control (Cc), format (Cf) and lone surrogate (Cs) characters of the BMP except newline,
    tab and the zero-width joiner (handled by :data:`_STRAY_ZWJ_RE`): zero-width spaces and
    non-joiners, BOM, soft hyphen, bidi marks, C1 controls. Built once from the Unicode database.
    (The few astral format characters, e.g. emoji tag sequences, are kept: a class with astral
    ranges scans at half the speed.)"""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x10000):
        if cp in (0x09, 0x0A, _ZWJ_CP) or unicodedata.category(chr(cp)) not in ("Cc", "Cf", "Cs"):
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    parts = [re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges]
    return re.compile("[" + "".join(parts) + "]+")


# Other line breaks become "\n"; exotic spaces (not the ideographic space U+3000) become " ".
_LINE_BREAK_CHARS = "\r\x0b\x0c\x85\u2028\u2029"
_LINE_BREAKS_RE = re.compile(f"\r\n?|[{_LINE_BREAK_CHARS}]")
_ODD_SPACES_RE = re.compile("[\xa0\u1680\u2000-\u200a\u202f\u205f]")
_TRAILING_WS_RE = re.compile(r"[^\S\n]+$", re.MULTILINE)
_SPACE_RUN_RE = re.compile(" {2,}")


def clean_text(text: str, cfg: CleanConfig) -> str:
    """Remove invisible and control characters, normalise line breaks and spacing.

    Zero-width joiners survive only inside emoji sequences (👨‍👩‍👧 stays one family). Keeps newlines, tabs, the ideographic space and all visible characters as they are (no
    NFKC). Trailing whitespace is stripped per line, runs of ASCII spaces collapse to one when
    ``cfg.collapse_spaces``, and more than ``cfg.max_consecutive_newlines`` newlines in a row
    collapse to that many.
    """
    if any(c in text for c in _LINE_BREAK_CHARS):
        text = _LINE_BREAKS_RE.sub("\n", text)
    text = _invisible_re().sub("", text)
    if "\u200d" in text:
        text = _STRAY_ZWJ_RE.sub("", text)
    text = _ODD_SPACES_RE.sub(" ", text)
    # Only " ", tab, U+3000 and newline are left as whitespace: cheap checks skip most passes.
    if " \n" in text or "\t\n" in text or "\u3000\n" in text:
        text = _TRAILING_WS_RE.sub("", text)
    if cfg.collapse_spaces and "  " in text:
        text = _SPACE_RUN_RE.sub(" ", text)
    limit = cfg.max_consecutive_newlines
    if "\n" * (limit + 1) in text:
        text = re.sub(f"\n{{{limit + 1},}}", "\n" * limit, text)
    return text.strip("\n ")


# ---------------------------------------------------------------------------------------------
# Boilerplate lines

TAG_LINE_MARKER = (
    r"^(?:[^:：\n]{0,16}[:：]\s*)?(?:本文|文章|相关|相關|热门|熱門|话题|話題|热点|熱點)?"
    r"(?:关键词|關鍵詞|关键字|關鍵字|标签|標籤|tags?|相关搜索|相關搜索|相关搜尋|相關搜尋|搜索|搜尋)\s*[:：]"
)
"""A keyword/tag footer line: SEO keyword lists that page templates append (boilerplate, and where
gambling brands are injected into otherwise ordinary pages)."""
_TAG_LINE_RE = re.compile(TAG_LINE_MARKER, re.IGNORECASE | re.MULTILINE)

# Markers of page furniture, in Simplified and Traditional forms. A line carrying one (and no
# longer than cfg.max_boilerplate_line_chars) is removed.
_BOILERPLATE_MARKERS = [
    # copyright and registration footers
    r"版[权權]所有",
    r"©",
    r"copyright\b",
    r"all rights reserved",
    r"保留(?:所有|一切)[权權]利",
    r"未[经經](?:本站|本网|本網|作者)?(?:[书書]面)?(?:授[权權]|许可|許可|同意).{0,12}[转轉]载",
    r"[转轉]载.{0,6}(?:注明|註明)",
    r"icp\s*[备備证證]",  # markers are written in lower case: the line scan runs on lower-cased text
    r"[备備]案[号號]",
    r"公[网網]安[备備]",
    r"增值[电電]信",
    # cookie notices (not prose that merely mentions cookies)
    r"cookie\s*(?:政策|聲明|声明|設定|设置|偏好|policy|settings|preferences|notice)",
    r"(?:同意|接受|accept|允許我們|允许我们)\S{0,10}\s*(?:使用\s*)?(?:所有\s*)?cookie",
    r"(?:本網站|本网站|本站|我們|我们|this (?:web)?site|we)\s*(?:會|会)?(?:使用|uses?|採用|采用)\s*cookie",
    # links to other pages, sharing, breadcrumbs
    r"^(?:上一篇|下一篇|上一[条條則则章页頁]|下一[条條則则章页頁]|上一文章|下一文章|前一篇|[后後]一篇)",
    r"^(?:分享到|分享至|转发到|轉發到)",
    r"^(?:当前位置|當前位置|您的位置|您现在的位置|您現在的位置|目前位置|所在位置)\s*[:：]",
    r"^(?:首[页頁]|主[页頁]|网站首页|網站首頁|home)\s*[>＞›»/|｜-]",
    # article metadata lines: "作者：陈亮", "来源：燕赵都市网", "标签：..."; short and without a clause
    r"^(?:责任编辑|責任編輯|编辑|編輯|来源|來源|作者|发布时间|發布時間|发布日期|發布日期|更新时间|更新時間"
    r"|浏览次数|瀏覽次數|点击量|點擊量|阅读量|閱讀量|关键词|關鍵詞|标签|標籤|相关标签|相關標籤|热门标签|熱門標籤"
    r"|热门城市|熱門城市|本文关键词|本文關鍵詞)\s*[:：][^，。,；;]{0,40}$",
    # keyword and tag footers: "本文关键词：欧宝体育app,德邦,物流", "Tags: ...", "相关搜索：..." (also after a
    # short prefix: "yabo手机版登录:相关标签：...")
    TAG_LINE_MARKER,
    # headings of link lists
    r"^(?:相关文章|相關文章|相关新闻|相關新聞|相关阅读|相關閱讀|推荐阅读|推薦閱讀|猜你喜欢|猜你喜歡|热门推荐|熱門推薦"
    r"|延伸阅读|延伸閱讀|热门文章|熱門文章|最新文章)\s*[:：]?$",
]

# Navigation words. A short line made mostly of two or more of them is a menu.
_NAV_WORDS = (
    "首页|首頁|网站首页|網站首頁|关于我们|關於我們|联系我们|聯絡我們|聯繫我們|联系方式|聯絡方式|网站地图|網站地圖"
    "|隐私政策|隱私政策|隱私權政策|隐私权政策|服务条款|服務條款|使用条款|使用條款|免责声明|免責聲明|加入收藏|设为首页"
    "|設為首頁|返回顶部|返回頂部|回到顶部|回到頂部|登录|登錄|登入|注册|註冊|免费注册|免費註冊|忘记密码|忘記密碼|会员中心"
    "|會員中心|在线客服|線上客服|在線客服|网站导航|網站導航|友情链接|友情連結|友情鏈接|人才招聘|广告服务|廣告服務|意见反馈"
    "|意見反饋|帮助中心|幫助中心|常见问题|常見問題|繁体中文|繁體中文|简体中文|簡體中文|手机版|手機版|电脑版|電腦版"
    "|新闻中心|新聞中心|产品中心|產品中心|公司简介|公司簡介|在线留言|線上留言|在線留言"
)
# ...and words that are navigation even when alone on a line (unlike 聯絡方式 or 常見問題, which
# are also ordinary headings).
_NAV_ALONE = (
    "首页|首頁|网站首页|網站首頁|返回顶部|返回頂部|回到顶部|回到頂部|返回首页|返回首頁|回到首页|回到首頁|返回列表"
    "|返回上一[页頁]|加入收藏|设为首页|設為首頁|登录|登錄|登入|注册|註冊|登入/註冊|登录/注册|网站地图|網站地圖|友情链接"
    "|友情連結|手机版|手機版|电脑版|電腦版|繁体中文|繁體中文|简体中文|簡體中文|English|TOP|RSS"
)
_SEPARATORS = r"\s|｜/>＞›»•·\-"
_NAV_WORD_RE = re.compile(f"(?:{_NAV_WORDS})")
_NAV_ALONE_RE = re.compile(f"^[{_SEPARATORS}]*(?:{_NAV_ALONE})[{_SEPARATORS}]*$", re.IGNORECASE)
_SEPARATORS_RE = re.compile(f"[{_SEPARATORS}]+")
# Lines ending like this are sentences or lead into content: never removed as repeats.
_SENTENCE_END = ("。", "！", "？", "；", "…", "」", "』", "”", "：", "，", "、", ".", "!", "?", ":", ";", ",")


@lru_cache(maxsize=32)
def _boilerplate_re(extra: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in (*_BOILERPLATE_MARKERS, *extra)), re.IGNORECASE)


@lru_cache(maxsize=32)
def _boilerplate_hint_res(extra: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Regexes over the lower-cased text that find every line that might be furniture.

    Split for speed (one big case-insensitive alternation scanned at 1.6 MB/s): line-anchored
    markers in MULTILINE mode, the unanchored markers, and the navigation words as a trie.
    """
    anchored, floating = [], []
    for pat in (*_BOILERPLATE_MARKERS, *extra):
        if pat.startswith("^"):
            anchored.append("^[^\\S\\n]*" + pat[1:])
        else:
            floating.append(pat)
    nav_words = {w.lower() for w in (*_NAV_WORDS.split("|"), *_NAV_ALONE.split("|"))}
    return (
        re.compile("|".join(f"(?:{x})" for x in anchored), re.MULTILINE | re.IGNORECASE),
        re.compile("|".join(f"(?:{x})" for x in floating), re.IGNORECASE if extra else 0),
        re.compile(_trie_pattern(sorted(nav_words))),
    )


def _has_han(line: str, n: int) -> bool:
    return sum(map(len, _HAN_RUN_RE.findall(line))) >= n


def _is_menu(line: str) -> bool:
    if _NAV_ALONE_RE.match(line):
        return True
    words = _NAV_WORD_RE.findall(line)
    return len(words) >= 2 and sum(map(len, words)) >= 0.5 * len(_SEPARATORS_RE.sub("", line))


def remove_boilerplate_lines(text: str, cfg: CleanConfig) -> tuple[str, int]:
    """Drop page-furniture lines; return (text, number of lines removed).

    Removed: lines no longer than ``cfg.max_boilerplate_line_chars`` that carry a copyright,
    registration (ICP 备案) or cookie-notice marker, navigation (menus, breadcrumbs, 上一篇/下一篇,
    返回頂部, 登入/註冊, 分享到...), short article metadata (作者：, 來源：) or a pattern of
    ``cfg.extra_boilerplate_patterns``. When ``cfg.remove_repeated_lines``, also later copies of
    lines of at most ``cfg.max_repeated_line_chars`` characters, with at least four Han characters,
    that do not end like a sentence (a title repeated as heading, menu items in header
    and footer; not list markers, code fences or table rules) - unless such copies would be
    more than ``cfg.max_repeated_line_share`` of the lines: then the repetition is structure
    (a table or form written one cell per line) and is left for the ``duplicated_lines`` filter.
    Prose is never removed here.
    """
    if not cfg.remove_boilerplate:
        return text, 0
    extra = tuple(cfg.extra_boilerplate_patterns)
    marker_re = _boilerplate_re(extra)
    max_len = cfg.max_boilerplate_line_chars
    lines = text.split("\n")
    drop: set[int] = set()
    # Whole-text scans in C find the few lines that can be furniture; only those are checked
    # line by line (a per-line regex loop ran at 3 MB/s on the gazette's short lines).
    lowered = text.lower()  # same line breaks as text
    candidates: set[int] = set()
    for hint in _boilerplate_hint_res(extra):
        for m in hint.finditer(lowered):
            candidates.add(lowered.count("\n", 0, m.start()))
            candidates.add(lowered.count("\n", 0, m.end()))
    for i in candidates:
        stripped = lines[i].strip()
        if stripped and len(stripped) <= max_len and (marker_re.search(stripped) or _is_menu(stripped)):
            drop.add(i)
    stripped_lines = [line.strip() for line in lines]
    counts = Counter(stripped_lines)
    n_lines = len(lines) - counts.get("", 0)
    if cfg.remove_repeated_lines:
        max_rep = cfg.max_repeated_line_chars
        dropped_text = {stripped_lines[i] for i in drop}
        repeated = {
            s
            for s, c in counts.items()
            if c > 1
            and s
            and len(s) <= max_rep
            and s not in dropped_text
            and not s.endswith(_SENTENCE_END)
            and _has_han(s, 4)
        }
        if repeated:
            seen: set[str] = set()
            repeats: list[int] = []
            for i, s in enumerate(stripped_lines):
                if s in repeated:
                    if s in seen:
                        repeats.append(i)
                    else:
                        seen.add(s)
            if len(repeats) <= cfg.max_repeated_line_share * n_lines:
                drop.update(repeats)
    removed = len(drop)
    if not removed:
        return text, 0
    out = "\n".join(line for i, line in enumerate(lines) if i not in drop)
    if "\n\n\n" in out:
        out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip("\n"), removed


# ---------------------------------------------------------------------------------------------
# Statistics shared by several filters (memoised on the string object)


@lru_cache(maxsize=8)
def _counts(text: str) -> tuple[int, int, int]:
    """(Han characters, other words, non-whitespace characters); "other words" are runs of
    letters or digits that are not Han (an English word or a number counts once)."""
    rest, runs = _HAN_RUN_RE.subn(" ", text)
    han = len(text) - len(rest) + runs
    words = len(_WORD_RUN_RE.findall(rest)) if len(rest) > runs else 0
    spaces = text.count(" ") + text.count("\n") + text.count("\t") + text.count("\u3000")
    return han, words, len(text) - spaces


def han_count(text: str) -> int:
    """Number of Han (CJK ideograph) characters, all extensions included."""
    return _counts(text)[0]


def han_ratio(text: str) -> float:
    """Share of Han characters among word units: Han characters plus non-Han words (runs of
    letters/digits). Punctuation and symbols do not count, and an English product name inside
    Chinese prose weighs one unit, not one per letter. 0.0 when there are no word units."""
    han, words, _ = _counts(text)
    return han / (han + words) if han + words else 0.0


# Whitespace and table-drawing characters (box drawing, blocks, rules) are not content.
_NGRAM_SKIP_RE = re.compile("[\\s\u2500-\u259f\u02cd_=\\-]+")
_HASH_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_powers_cache: list[np.ndarray] = [np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64)]


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """(B**k, B**-k) modulo 2**64 for k < length, grown on demand and kept per process."""
    if len(_powers_cache[0]) < length:
        size = max(length, 2 * len(_powers_cache[0]))
        for i, base in enumerate((_HASH_BASE, pow(_HASH_BASE, -1, 2**64))):
            steps = np.full(size, base, dtype=np.uint64)
            steps[0] = 1
            _powers_cache[i] = np.cumprod(steps, dtype=np.uint64)
    return _powers_cache[0][:length], _powers_cache[1][:length]


def dup_ngram_fraction(text: str, n: int) -> float:
    """Fraction of characters covered by repeated occurrences of a character n-gram (Gopher's
    duplicate n-gram fraction on characters instead of words; first occurrences do not count).
    Whitespace and table rules (─│┼, ____) are ignored.

    Vectorised: n-gram hashes come from one prefix sum of a polynomial hash modulo 2**64
    (h(i) = (S[i+n] - S[i]) * B**-i), then one argsort finds the repeats."""
    chars = _NGRAM_SKIP_RE.sub("", text)
    length = len(chars)
    if length < 2 * n:
        return 0.0
    m = length - n + 1
    codes = np.frombuffer(chars.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    pow_b, pow_inv = _powers(length)
    prefix = np.cumsum(codes * pow_b)  # prefix[k] = sum of codes[:k+1] * B**i
    hashes = prefix[n - 1 :].copy()
    hashes[1:] -= prefix[: m - 1]
    hashes *= pow_inv[:m]
    order = np.argsort(hashes)
    ranked = hashes[order]
    new_group = np.empty(m, dtype=bool)
    new_group[0] = True
    np.not_equal(ranked[1:], ranked[:-1], out=new_group[1:])
    if np.count_nonzero(new_group) == m:  # no n-gram occurs twice
        return 0.0
    group_starts = np.flatnonzero(new_group)
    repeat = np.ones(m, dtype=np.int64)
    repeat[np.minimum.reduceat(order, group_starts)] = 0  # first occurrence of each n-gram
    starts = np.concatenate(([0], np.cumsum(repeat)))
    pos = np.arange(length)
    covered = starts[np.minimum(pos + 1, m)] - starts[np.maximum(pos - n + 1, 0)] > 0
    return float(np.count_nonzero(covered)) / length


_MIN_DUP_LINE_CHARS = 5  # shorter lines (list markers "(一)", "1.", table cells) repeat legitimately


def duplicate_line_fractions(text: str) -> tuple[float, float]:
    """(fraction of lines that repeat an earlier line, fraction of their characters), over lines
    of at least five characters (list markers such as "(一)" repeat in any structured text)."""
    seen: set[str] = set()
    lines = dup_lines = chars = dup_chars = 0
    for line in text.split("\n"):
        line = line.strip()
        if len(line) < _MIN_DUP_LINE_CHARS:
            continue
        lines += 1
        chars += len(line)
        if line in seen:
            dup_lines += 1
            dup_chars += len(line)
        else:
            seen.add(line)
    if not lines:
        return 0.0, 0.0
    return dup_lines / lines, dup_chars / chars


# ---------------------------------------------------------------------------------------------
# Spam keywords (gambling and porn). Written in Simplified; Traditional and Taiwan forms are added
# with OpenCC when the matcher is built. Specific compounds only: words that news, law and fiction
# use (赌博, 赌场, 博彩业, 彩券, 投注, 成人, 威尼斯人 the resort) would flag legitimate text.

# fmt: off
SPAM_KEYWORDS: tuple[str, ...] = (
    # gambling: games, site vocabulary
    "博彩网", "博彩平台", "博彩网址", "博彩官网", "娱乐城", "百家乐", "六合彩", "时时彩", "真人视讯",
    "真人娱乐", "现金网", "现金版", "网上赌场", "线上赌场", "在线赌场", "网络赌博", "网上赌博", "赌博网站",
    "线上博弈", "博弈网站", "博弈平台", "老虎机", "电子游艺", "捕鱼机", "棋牌游戏", "开元棋牌", "棋牌娱乐",
    "彩票平台", "彩票网", "彩票app", "购彩", "注册送", "体验金", "首存", "洗码", "赌球", "外围投注",
    "竞猜平台", "北京赛车", "幸运飞艇", "幸运8", "pk10", "11选5", "特码", "开奖直播", "娱乐官网",
    "娱乐网址", "娱乐注册", "娱乐开户", "体育app", "体育平台", "体育投注", "体育登录",
    "现金网址", "申博",
    # gambling: brands seen in crawled spam
    "威尼斯人娱乐", "威尼斯人官网", "威尼斯人网址", "威尼斯人注册", "威尼斯人平台", "威尼斯人app",
    "新葡京", "葡京娱乐", "太阳城集团", "太阳城娱乐", "金沙娱乐", "金沙网站", "金沙线路", "金沙官网",
    "金沙平台", "银河娱乐", "永利娱乐", "皇冠体育", "皇冠现金", "皇冠娱乐", "贵宾会", "亚博体育",
    "亚博娱乐", "亚博官网", "欧宝体育", "欧宝娱乐", "华体会", "爱游戏体育", "开云体育", "乐鱼体育",
    "必威体育", "雷竞技", "沙巴体育", "AG真人", "BBIN", "bet365", "bt365", "365bet", "188bet", "betway",
    "yabo", "js333", "ope体育", "海德体育", "币游国际", "乐虎国际",
    # porn
    "色情网站", "色情片", "色情影片", "色情视频", "色情图片", "免费色情", "色情小说", "成人电影",
    "成人影片", "成人视频", "成人网站", "成人影院", "成人小说", "AV女优", "AV电影", "AV视频", "AV在线",
    "无码", "一本道", "东京热", "自拍偷拍", "偷拍视频", "裸聊", "约炮", "约砲", "一夜情", "援交妹",
    "援交女", "外约", "楼凤", "外围女", "三级片", "黄片", "黄色网站", "毛片", "激情视频", "激情小说",
    "情色", "乱伦", "巨乳", "爆乳", "口交", "肛交", "做爱", "性爱", "淫荡", "淫乱", "骚货", "啪啪啪",
)
# fmt: on


def _trie_pattern(words: list[str]) -> str:
    """Regex matching any of ``words`` (longest first), factored as a trie so that the regex
    engine skips non-candidate positions at C speed (a plain alternation of 300 words, or any
    case-insensitive pattern, is 10x slower)."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        alts = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        if "" in node:
            return f"(?:{'|'.join(alts)})?"
        return alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"

    return build(trie)


@lru_cache(maxsize=8)
def _spam_matcher(keywords: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str]]:
    """Regex over every keyword in Simplified, Traditional and Taiwan forms, lower-cased (it runs
    on lower-cased text), and a map from each form to its canonical keyword (so 娱乐城/娛樂城
    count as one distinct keyword)."""
    import opencc  # only needed to build the matcher

    converters = [opencc.OpenCC(c) for c in ("s2t", "s2tw", "s2twp", "t2s")]
    canonical: dict[str, str] = {}
    for kw in keywords:
        kw = kw.strip()
        for form in {kw, *(cc.convert(kw) for cc in converters)}:
            canonical.setdefault(form.lower(), kw.lower())
    pattern = _trie_pattern(list(canonical)) or r"(?!x)x"
    return re.compile(pattern), canonical


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def spam_keyword_hits(text: str, cfg: FilterConfig) -> tuple[int, int]:
    """(keyword occurrences, distinct keywords) of the configured spam vocabulary in ``text``.
    Keywords starting or ending with a Latin letter or digit only match as whole words there
    (``av`` is not found in ``Java``)."""
    keywords = (*(SPAM_KEYWORDS if cfg.spam_use_builtin_keywords else ()), *cfg.spam_extra_keywords)
    if not keywords:
        return 0, 0
    matcher, canonical = _spam_matcher(keywords)
    text = text.lower()
    found: list[str] = []
    for m in matcher.finditer(text):
        start, end = m.span()
        word = m.group()
        if _is_ascii_alnum(word[0]) and start and _is_ascii_alnum(text[start - 1]):
            continue
        if _is_ascii_alnum(word[-1]) and end < len(text) and _is_ascii_alnum(text[end]):
            continue
        found.append(canonical.get(word, word))
    return len(found), len(set(found))


def tag_lines(text: str, max_chars: int) -> list[str]:
    """The keyword/tag footer lines of ``text`` (:data:`TAG_LINE_MARKER`, at most ``max_chars``
    characters): kept aside by the cleaning step, which removes them, for :func:`spam_injection`."""
    if "：" not in text and ":" not in text:
        return []
    found = []
    for m in _TAG_LINE_RE.finditer(text):
        end = text.find("\n", m.start())
        line = text[m.start() : len(text) if end < 0 else end].strip()
        if len(line) <= max_chars:
            found.append(line)
    return found


_MAX_TITLE_CHARS = 60


def spam_injection(text: str, title: str, tags: list[str], cfg: FilterConfig) -> str | None:
    """``spam_injection``: a spam keyword (gambling/porn brand or site vocabulary) in the page's
    title, its first or last line (when no longer than a title), or a keyword/tag footer line. SEO operators inject one brand
    (欧宝体育, 必威betway, 华体会官网) into copied articles there, below the page-level density of
    :func:`filter_spam`; an ordinary page does not name a gambling site in its title or tags."""
    if not cfg.spam_injection:
        return None
    first, _, rest = text.partition("\n")
    last = rest.rpartition("\n")[2]
    lines = [line for line in (first, last) if len(line) <= _MAX_TITLE_CHARS]  # a title, not prose
    places = "\n".join([title, *lines, *tags])
    hits, _ = spam_keyword_hits(places, cfg)
    return "spam_injection" if hits else None


# ---------------------------------------------------------------------------------------------
# Product listings: e-commerce pages (price, reviews, shipping, cart) are catalogue boilerplate

LISTING_SIGNALS: dict[str, str] = {
    "price": r"[¥￥]\s*\d|(?:价格|價格|售价|售價|原价|原價|促销价|促銷價|优惠价|優惠價|团购价|團購價)\s*[:：]?\s*[¥￥]?\d",
    "reviews": r"\d+\s*(?:条|條|人|个|個)?(?:评价|評價|评论|評論)|(?:评价|評價|评论|評論)\s*[(（]\d+|好评率|好評率|累计评价|累計評價",
    "shipping": r"包邮|包郵|免运费|免運費|运费|運費|配送|发货|發貨|快递|快遞|物流",
    "cart": r"加入购物车|加入購物車|立即购买|立即購買|购物车|購物車|库存|庫存|已售|月销|月銷|销量|銷量|赠品|贈品|商品编号|商品編號|货号|貨號",
}
"""Signals of a product listing, each a kind of e-commerce furniture; see :func:`listing_signals`."""
_LISTING_RES = {name: re.compile(pattern) for name, pattern in LISTING_SIGNALS.items()}
# Literal words every reviews/cart match contains, as a trie regex: a cheap first scan (the full
# patterns start with digit runs and alternations, 5x slower over text without any of them).
_LISTING_HINT_RE = re.compile(
    _trie_pattern(["评价", "評價", "评论", "評論", "好评率", "好評率"] + LISTING_SIGNALS["cart"].split("|"))
)


def listing_signals(text: str) -> int:
    """How many different kinds of :data:`LISTING_SIGNALS` ``text`` carries (0-4)."""
    return sum(1 for r in _LISTING_RES.values() if r.search(text))


def filter_product_listing(text: str, cfg: FilterConfig) -> str | None:
    """``product_listing`` when at least ``cfg.product_listing_min_signals`` kinds of listing
    furniture occur and one of them is reviews or cart (an article that mentions a price and
    shipping stays). 0 switches the filter off."""
    need = cfg.product_listing_min_signals
    if not need:
        return None
    # reviews or cart is required: most pages stop at this one scan for their words
    if not _LISTING_HINT_RE.search(text):
        return None
    if not (_LISTING_RES["reviews"].search(text) or _LISTING_RES["cart"].search(text)):
        return None
    return "product_listing" if listing_signals(text) >= need else None


# ---------------------------------------------------------------------------------------------
# Mainland usage left after conversion

MAINLAND_TERMS_PATH = Path(__file__).with_name("data") / "mainland_terms.tsv"


@lru_cache(maxsize=4)
def mainland_terms(path: str = str(MAINLAND_TERMS_PATH)) -> tuple[str, ...]:
    """The mainland-only words (after conversion) of ``data/mainland_terms.tsv``: first column."""
    terms = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            terms.append(line.split("\t", 1)[0])
    return tuple(terms)


@lru_cache(maxsize=4)
def _mainland_re(terms: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(_trie_pattern(sorted(set(terms))) or r"(?!x)x")


def mainland_usage(text: str, terms: tuple[str, ...] | None = None) -> tuple[int, float]:
    """(occurrences of mainland-only words, occurrences per 1000 Han characters) in ``text``."""
    matcher = _mainland_re(terms if terms is not None else mainland_terms())
    hits = len(matcher.findall(text))
    han = _counts(text)[0]
    return hits, (1000.0 * hits / han if han else 0.0)


# ---------------------------------------------------------------------------------------------
# Encoding damage

# UTF-8 bytes shown as Latin-1/cp1252: a lead byte of a 3-byte sequence (à-ï: U+0800-FFFF, CJK
# is ä-é) followed by continuation bytes (0x80-0xBF, or their cp1252 glyphs), and "Ã©"/"Â "-style
# double-encoded Latin. Also GBK-decoded replacement (锟斤拷) and uninitialised-buffer runs
# (烫烫烫, 屯屯屯), and private-use characters.
_CP1252_CONT = (
    "\u0080-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u017d"
    "\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178"
)
_MOJIBAKE_RE = re.compile(
    f"[\u00e0-\u00ef][{_CP1252_CONT}]{{1,2}}|[\u00c2\u00c3][{_CP1252_CONT}]|锟斤拷|(?:烫){{3,}}|(?:屯){{3,}}"
    "|[\ue000-\uf8ff\U000f0000-\U0010ffff]+"
)

# Characters that start every pattern above: a cheap scan that rules most texts out.
_MOJIBAKE_HINT_RE = re.compile("[\u00c2\u00c3\u00e0-\u00ef锟烫屯\ue000-\uf8ff\U000f0000-\U0010ffff]")

_RARE_HAN_MIN_CHARS = 50  # below this many Han characters the rare-character share is noise


@lru_cache(maxsize=1)
def _rare_han_re() -> re.Pattern[str]:
    """Han characters (U+3400-9FFF) outside everyday vocabulary, see ``script.common_han_chars``."""
    from zhtw.corpus.script import common_han_chars

    try:
        common = common_han_chars()
    except (OSError, ValueError) as exc:  # an OpenCC build whose dictionaries cannot be read
        logger.warning("rare-character mojibake check disabled: %s", exc)
        return re.compile(r"(?!x)x")
    ranges: list[tuple[int, int]] = []
    for cp in range(0x3400, 0xA000):
        if chr(cp) in common or chr(cp) in CANTONESE_CHARS:  # written Cantonese is not mojibake
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return re.compile("[" + "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges) + "]")


def rare_han_fraction(text: str) -> float:
    """Share of Han characters outside everyday vocabulary (0.0 below 50 Han characters): high
    in text decoded with the wrong CJK codec (涓枃 for 中文)."""
    han = _counts(text)[0]
    if han < _RARE_HAN_MIN_CHARS:
        return 0.0
    return len(_rare_han_re().findall(text)) / han


def mojibake_fraction(text: str) -> float:
    """Fraction of non-whitespace characters inside mojibake sequences or private-use runs."""
    if not _MOJIBAKE_HINT_RE.search(text):
        return 0.0
    bad = sum(map(len, _MOJIBAKE_RE.findall(text)))
    if not bad:
        return 0.0
    return bad / max(_counts(text)[2], 1)


# ---------------------------------------------------------------------------------------------
# Other languages written with Han characters

KANA_CLASS = "\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fd-\u30ff\u31f0-\u31ff\uff66-\uff9d"
"""Hiragana and katakana, without the middle dot ・ and the long-vowel mark ー (Chinese uses both)."""
HANGUL_CLASS = "\u1100-\u11ff\u3131-\u318e\uac00-\ud7a3"
CANTONESE_CHARS = "嘅咗哋冇唔佢喺嚟啲嘢嗰噉咁㗎嘞諗搵揾瞓冚乜睇畀啱攰嬲"
"""Characters of written Cantonese (possessive 嘅, perfective 咗, plural 哋, 冇 not have, 唔 not,
佢 he/she, 喺 at, 嚟 come, ...) that standard written Chinese does not use (囉 and 咩 are left
out: Taiwanese informal writing uses them). Measured share of Han characters: Cantonese prose
5-20%; every zh-TW set in ../shared/data at most 0.3% (a classical poem with 唔), one or two
distinct characters per document."""
CANTONESE_MIN_DISTINCT = 3
_KANA_RE = re.compile(f"[{KANA_CLASS}]+")
_HANGUL_RE = re.compile(f"[{HANGUL_CLASS}]+")
_CANTONESE_RE = re.compile(f"[{CANTONESE_CHARS}]")


def script_shares(text: str) -> tuple[float, float]:
    """(kana share, hangul share) of the Han, kana and hangul characters of ``text`` (0.0 when none)."""
    kana = sum(map(len, _KANA_RE.findall(text)))
    hangul = sum(map(len, _HANGUL_RE.findall(text)))
    if not (kana or hangul):
        return 0.0, 0.0
    total = _counts(text)[0] + kana + hangul
    return kana / total, hangul / total


def cantonese_share(text: str) -> tuple[float, int]:
    """(share of Han characters that are written-Cantonese characters, number of distinct ones)."""
    found = _CANTONESE_RE.findall(text)
    if not found:
        return 0.0, 0
    return len(found) / max(_counts(text)[0], 1), len(set(found))


# ---------------------------------------------------------------------------------------------
# Filters: (text, cfg) -> drop reason or None


def filter_length(text: str, cfg: FilterConfig) -> str | None:
    """``empty`` for blank text, ``too_long`` above ``cfg.max_chars`` characters."""
    if not text or text.isspace():
        return "empty"
    if len(text) > cfg.max_chars:
        return "too_long"
    return None


def filter_replacement_chars(text: str, cfg: FilterConfig) -> str | None:
    """``replacement_chars`` when U+FFFD (undecodable bytes) exceeds the allowed fraction."""
    bad = text.count("\ufffd")
    if bad and bad > cfg.max_replacement_char_fraction * len(text):
        return "replacement_chars"
    return None


def filter_mojibake(text: str, cfg: FilterConfig) -> str | None:
    """``mojibake`` when Latin-1/cp1252-decoded UTF-8, 锟斤拷-style debris and private-use
    characters exceed ``cfg.max_mojibake_fraction`` of the text, or when more than
    ``cfg.max_rare_han_fraction`` of the Han characters are outside everyday vocabulary (UTF-8 or
    Big5 bytes decoded as GBK and the like)."""
    if mojibake_fraction(text) > cfg.max_mojibake_fraction:
        return "mojibake"
    if rare_han_fraction(text) > cfg.max_rare_han_fraction:
        return "mojibake"
    return None


def filter_language(text: str, cfg: FilterConfig) -> str | None:
    """``japanese`` / ``korean`` when kana / hangul exceed ``cfg.max_kana_fraction`` /
    ``cfg.max_hangul_fraction`` of the Han, kana and hangul characters (Japanese prose is 30-70%
    kana; the most in a zh-TW set here, Japanese company names in the gazette, is 0.8%);
    ``cantonese`` when written-Cantonese characters (:data:`CANTONESE_CHARS`, at least
    ``CANTONESE_MIN_DISTINCT`` different ones) exceed ``cfg.max_cantonese_fraction`` of the Han
    characters. All three read as Chinese to the Han filters but are not Taiwan Mandarin."""
    kana, hangul = script_shares(text)
    if kana > cfg.max_kana_fraction:
        return "japanese"
    if hangul > cfg.max_hangul_fraction:
        return "korean"
    share, distinct = cantonese_share(text)
    if share > cfg.max_cantonese_fraction and distinct >= CANTONESE_MIN_DISTINCT:
        return "cantonese"
    return None


def filter_han_count(text: str, cfg: FilterConfig) -> str | None:
    """``too_few_han`` below ``cfg.min_han_chars`` Han characters."""
    if han_count(text) < cfg.min_han_chars:
        return "too_few_han"
    return None


def filter_han_ratio(text: str, cfg: FilterConfig) -> str | None:
    """``low_han_ratio`` when Han characters are below ``cfg.min_han_ratio`` of non-space characters."""
    if han_ratio(text) < cfg.min_han_ratio:
        return "low_han_ratio"
    return None


def filter_spam(text: str, cfg: FilterConfig) -> str | None:
    """``spam``: at least ``spam_min_hits`` gambling/porn keyword occurrences and either
    ``spam_min_density`` occurrences per 1000 characters or ``spam_min_distinct`` distinct keywords.
    A news story that mentions 彩票 once or twice in passing stays."""
    hits, distinct = spam_keyword_hits(text, cfg)
    if hits < cfg.spam_min_hits:
        return None
    density = 1000.0 * hits / max(len(text), 1)
    if density >= cfg.spam_min_density or distinct >= cfg.spam_min_distinct:
        return "spam"
    return None


def filter_duplicated_lines(text: str, cfg: FilterConfig) -> str | None:
    """``duplicated_lines`` when repeated lines exceed either the line or the character fraction."""
    lines, chars = duplicate_line_fractions(text)
    if lines > cfg.max_duplicate_line_fraction or chars > cfg.max_duplicate_line_char_fraction:
        return "duplicated_lines"
    return None


def filter_char_ngram_repetition(text: str, cfg: FilterConfig) -> str | None:
    """``char_ngram_repetition`` when repeated character ``cfg.ngram_n``-grams cover more than
    ``cfg.max_ngram_dup_fraction`` of the text (keyword stuffing, looping generators)."""
    if dup_ngram_fraction(text, cfg.ngram_n) > cfg.max_ngram_dup_fraction:
        return "char_ngram_repetition"
    return None


Filter = Callable[[str, FilterConfig], "str | None"]

FILTERS: dict[str, Filter] = {
    "length": filter_length,
    "replacement_chars": filter_replacement_chars,
    "mojibake": filter_mojibake,
    "language": filter_language,
    "han_count": filter_han_count,
    "han_ratio": filter_han_ratio,
    "spam": filter_spam,
    "product_listing": filter_product_listing,
    "duplicated_lines": filter_duplicated_lines,
    "char_ngram_repetition": filter_char_ngram_repetition,
}
"""Quality filters in pipeline order; key = step name, value returns a drop reason or None."""


def first_drop_reason(text: str, cfg: FilterConfig) -> str | None:
    """Run all :data:`FILTERS` in order and return the first drop reason (None = keep)."""
    for check in FILTERS.values():
        reason = check(text, cfg)
        if reason is not None:
            return reason
    return None
