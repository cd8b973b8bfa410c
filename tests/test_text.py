"""Cleaning, boilerplate removal and every quality filter, on realistic Chinese text."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from zhtw.corpus.config import CleanConfig, FilterConfig
from zhtw.corpus.text import (
    FILTERS,
    clean_text,
    dup_ngram_fraction,
    filter_char_ngram_repetition,
    filter_duplicated_lines,
    filter_han_count,
    filter_han_ratio,
    filter_length,
    filter_mojibake,
    filter_replacement_chars,
    filter_spam,
    first_drop_reason,
    han_count,
    han_ratio,
    rare_han_fraction,
    remove_boilerplate_lines,
    spam_keyword_hits,
)

CLEAN = CleanConfig()
FC = FilterConfig()

PROSE_TW = (
    "臺灣位於東亞，西隔臺灣海峽與中國大陸相望，北臨東海，東濱太平洋。島上多山，中央山脈縱貫南北，"
    "玉山主峰海拔三千九百五十二公尺，為東北亞第一高峰。氣候屬亞熱帶與熱帶季風氣候，夏季炎熱多雨，"
    "颱風常於七至九月間來襲。人口約兩千三百萬，多集中於西部平原，臺北、新北、桃園、臺中、臺南與高雄"
    "為六個直轄市。經濟以製造業與服務業為主，半導體產業在全球供應鏈中舉足輕重。"
)
NEWS_CN = (
    "据江西省应急管理厅消息，3月11日凌晨，宜春市铜鼓县一家制药企业发生爆炸事故，造成1人死亡、2人受伤。"
    "事故发生后，县政府领导和相关部门迅速赶赴现场，开展救援和应急处置工作，成立事故调查组、善后处理组"
    "等四个工作组。目前两名伤者已送医救治，伤势平稳，无生命危险；环境监测结果显示对周边环境未造成污染。"
)


# --- clean_text -------------------------------------------------------------------------------


def test_full_width_punctuation_survives_byte_identical():
    text = "「你好，世界！」他問：「今天好嗎？」——是的。《紅樓夢》（第一回）；ＡＢＣ１２３～…"
    assert clean_text(text, CLEAN).encode("utf-8") == text.encode("utf-8")


def test_control_and_zero_width_characters_removed():
    dirty = "\ufeff中\u200b文\u200d測\u2060試\x00\x07\u00ad，\u200e好\u202e的\x85。"
    assert clean_text(dirty, CLEAN) == "中文測試，好的\n。"


def test_line_endings_whitespace_and_blank_lines():
    text = "第一行  \r\n第二行\u3000\r第三行\t\n\n\n\n\n第四行\xa0有  多個   空格\n"
    assert clean_text(text, CLEAN) == "第一行\n第二行\n第三行\n\n第四行 有 多個 空格"


def test_indentation_and_tabs_kept():
    text = "\u3000\u3000話說是日賈敬的壽辰。\n名稱\t數量"
    assert clean_text(text, CLEAN) == text


def test_clean_options():
    cfg = CleanConfig(max_consecutive_newlines=1, collapse_spaces=False)
    assert clean_text("甲  乙\n\n\n丙", cfg) == "甲  乙\n丙"


def test_lone_surrogate_removed_so_text_encodes():
    assert clean_text("壞\ud800字", CLEAN).encode("utf-8") == "壞字".encode()


# --- remove_boilerplate_lines ----------------------------------------------------------------

PAGE = """首頁 | 關於我們 | 最新消息 | 聯絡我們
當前位置：首頁 > 新聞中心 > 公司新聞
颱風過後的農田復耕計畫
颱風過後的農田復耕計畫
作者：王小明
農業部今天宣布，針對颱風造成的農損，將提供每公頃三萬元的復耕補助，申請期限至月底為止。
受災農民可向各地農會提出申請，並檢附受損照片與土地證明文件，審核通過後款項將直接匯入帳戶。
本網站使用 Cookie 以提升您的瀏覽體驗，繼續瀏覽即表示您同意我們使用 Cookie。
分享到：Facebook LINE Twitter
上一篇：稻米價格穩定 農民收入增加
下一篇：農業部推動智慧農業
返回頂部
登入 | 註冊
Copyright © 2024 農業新聞網 All rights reserved.
版權所有，未經授權不得轉載
沪ICP备05054598号"""


def test_boilerplate_page():
    text, removed = remove_boilerplate_lines(PAGE, CLEAN)
    assert text == (
        "颱風過後的農田復耕計畫\n"
        "農業部今天宣布，針對颱風造成的農損，將提供每公頃三萬元的復耕補助，申請期限至月底為止。\n"
        "受災農民可向各地農會提出申請，並檢附受損照片與土地證明文件，審核通過後款項將直接匯入帳戶。"
    )
    assert removed == len(PAGE.split("\n")) - 3


def test_boilerplate_simplified_navigation():
    page = (
        "网站首页 | 产品中心 | 新闻中心 | 联系我们\n"
        + NEWS_CN
        + "\n上一条：公司参加展会\n设为首页 加入收藏\n京公网安备11010502030143号"
    )
    text, removed = remove_boilerplate_lines(page, CLEAN)
    assert text == NEWS_CN
    assert removed == 4


def test_boilerplate_keeps_prose_that_mentions_the_words():
    lines = [
        "請先登入或註冊會員，才能在首頁看到為您推薦的課程內容。",  # prose, not a menu
        "如果您使用硬體負載平衡器，請在負載平衡器上啟用 cookie 暫留。",  # mentions cookie
        "著作權人享有版權，但合理使用不在此限，這是著作權法第六十五條的規定，法院會綜合判斷各種情形。"
        "依照本條規定，判斷是否屬於合理使用時，應審酌利用之目的及性質、著作之性質、所利用之質量等等，"
        "再加上其他一切情狀作為判斷之基準。",  # long line: never boilerplate
        "威廉·瓊斯·陸特",  # middle dots are not menu separators
        "移至 帳戶 > 網域 > 管理網域",  # an instruction path, not a breadcrumb
        "(一)",
        "(一)",  # list markers repeat in structured text
    ]
    text = "\n".join(lines)
    assert remove_boilerplate_lines(text, CLEAN) == (text, 0)


def test_repeated_cells_of_a_table_are_structure_not_boilerplate():
    rows = []
    for i in range(30):
        rows += [f"第{i + 1}號", "自用小客車", "和潤企業股份有限公司"]
    text = "\n".join(rows)
    assert remove_boilerplate_lines(text, CLEAN) == (text, 0)


def test_boilerplate_extra_patterns_and_switches():
    text = "本文由AI輔助生成\n" + PROSE_TW
    cfg = CleanConfig(extra_boilerplate_patterns=[r"^本文由AI輔助生成$"])
    assert remove_boilerplate_lines(text, cfg) == (PROSE_TW, 1)
    assert remove_boilerplate_lines(PAGE, CleanConfig(remove_boilerplate=False)) == (PAGE, 0)
    text, _ = remove_boilerplate_lines(PAGE, CleanConfig(remove_repeated_lines=False))
    assert text.count("颱風過後的農田復耕計畫") == 2


# --- filters: a keep case and a drop case each ------------------------------------------------


def test_length_filter():
    assert filter_length(PROSE_TW, FC) is None
    assert filter_length("", FC) == "empty"
    assert filter_length(" \n\u3000\n", FC) == "empty"
    assert filter_length(PROSE_TW * 10, FilterConfig(max_chars=1000)) == "too_long"


def test_han_count_filter():
    assert han_count("中文 English 𠀀") == 3
    assert filter_han_count(PROSE_TW, FC) is None
    assert filter_han_count("首頁 | Home | 登入", FC) == "too_few_han"


def test_han_ratio_filter():
    tech = "在商務用 Skype Server 中設定位置資料庫，您必須先使用 PowerShell 的 New-CsLisLocation Cmdlet 填入網路元素。"
    assert han_ratio(tech) > 0.7
    assert filter_han_ratio(tech, FC) is None
    english = (
        "Welcome to our online store. We ship worldwide within three business days and offer free "
        "returns on all orders over fifty dollars. 首頁 關於我們 聯絡我們 Contact us for details."
    )
    assert filter_han_ratio(english, FC) == "low_han_ratio"
    assert han_ratio("") == 0.0


def test_char_ngram_repetition_filter():
    assert filter_char_ngram_repetition(PROSE_TW, FC) is None
    looping = "\n".join([NEWS_CN, PROSE_TW, NEWS_CN, NEWS_CN])
    assert dup_ngram_fraction(looping, 20) > 0.4
    assert filter_char_ngram_repetition(looping, FC) == "char_ngram_repetition"


def test_char_ngram_repetition_ignores_table_rules():
    rows = [f"│第{i}項│{i * 100}元│\n├──────────┼──────────┤" for i in range(20)]
    table = "┌──────────┬──────────┐\n" + "\n".join(rows)
    assert dup_ngram_fraction(PROSE_TW + "\n" + table, 20) < 0.2


def test_duplicated_lines_filter():
    assert filter_duplicated_lines(PROSE_TW, FC) is None
    lines = ["熱門商品：無紡布口罩 每盒五十片 限時特價", "歡迎來電洽詢：02-2345-6789 客服專線"] * 4 + [
        PROSE_TW
    ]
    assert filter_duplicated_lines("\n".join(lines), FC) == "duplicated_lines"
    listing = "\n".join(f"(一)\n第{i}項規定之申請程序應依本辦法辦理並檢附相關文件。" for i in range(10))
    assert filter_duplicated_lines(listing, FC) is None


GAMBLING_CN = (
    "澳门威尼斯人娱乐官网，最新现金网注册送88元，百家乐、六合彩、时时彩、北京赛车在线投注。\n"
    "真人视讯24小时在线，首存优惠100%，体育app下载即可领取彩金。\n" + NEWS_CN
)
GAMBLING_TW = (
    "線上娛樂城推薦！註冊送體驗金，百家樂、老虎機、運彩分析一次滿足，現金版信用版任你選。\n"
    "最安全的線上博弈平台，出金快速，真人視訊與電子遊藝每日返水。\n" + PROSE_TW
)
PORN_TW = "免費成人影片線上看，AV女優無碼高清，自拍偷拍每日更新。\n" + PROSE_TW


@pytest.mark.parametrize("text", [GAMBLING_CN, GAMBLING_TW, PORN_TW])
def test_spam_filter_drops_gambling_and_porn(text):
    assert filter_spam(text, FC) == "spam"


def test_spam_filter_keeps_passing_mentions():
    news = (
        "香港賽馬會公布本期六合彩頭獎由一注獨得，"
        + PROSE_TW
        + "另據統計，澳門博彩業收入連續三個月成長，賭場訪客增加。"
    )
    assert spam_keyword_hits(news, FC) == (1, 1)
    assert filter_spam(news, FC) is None
    report = "警方查獲非法老虎機店家。" + PROSE_TW * 6 + "業者坦承店內老虎機皆未經許可。"
    assert spam_keyword_hits(report, FC) == (2, 1)  # 2 hits in 1300 characters: density 1.5/1000
    assert filter_spam(report, FC) is None


def test_spam_ascii_keywords_match_whole_words_any_case():
    assert spam_keyword_hits("最新 PK10 開獎直播，bet365 官網", FC) == (3, 3)
    assert spam_keyword_hits("pk100 型號與 alphabet365days 網站", FC) == (0, 0)


def test_spam_keyword_config():
    text = "本站提供職棒簽賭盤口，簽賭下注請加賴。" + PROSE_TW
    assert filter_spam(text, FC) is None
    cfg = FilterConfig(spam_extra_keywords=["簽賭", "加賴"])
    assert spam_keyword_hits(text, cfg) == (3, 2)
    assert filter_spam(text, cfg) == "spam"
    assert filter_spam(GAMBLING_CN, FilterConfig(spam_use_builtin_keywords=False)) is None


def test_mojibake_filter_latin1_and_cp1252():
    assert filter_mojibake(PROSE_TW, FC) is None
    latin1 = clean_text(PROSE_TW.encode("utf-8").decode("latin-1"), CLEAN)  # C1 controls removed
    cp1252 = PROSE_TW.encode("utf-8").decode("cp1252", errors="replace")
    assert filter_mojibake(latin1, FC) == "mojibake"
    assert filter_mojibake(cp1252, FC) == "mojibake"
    assert filter_mojibake(PROSE_TW + "錯誤訊息：锟斤拷锟斤拷锟斤拷", FC) == "mojibake"


def test_mojibake_filter_wrong_cjk_codec():
    utf8_as_gbk = PROSE_TW.encode("utf-8").decode("gbk", errors="ignore")
    big5_as_gbk = PROSE_TW.encode("big5").decode("gbk", errors="ignore")
    assert rare_han_fraction(PROSE_TW) < 0.05
    assert rare_han_fraction(utf8_as_gbk) > 0.3
    assert filter_mojibake(utf8_as_gbk, FC) == "mojibake"
    assert filter_mojibake(big5_as_gbk, FC) == "mojibake"
    assert filter_mojibake(NEWS_CN, FC) is None


def test_replacement_chars_filter():
    assert filter_replacement_chars(PROSE_TW * 3 + "\ufffd", FC) is None  # a stray byte in 600 chars
    broken = PROSE_TW.encode("big5").decode("utf-8", errors="replace")
    assert filter_replacement_chars(broken, FC) == "replacement_chars"


def test_filters_never_crash_on_odd_input():
    odd = ["\ud800" * 50 + "壞" * 30, "\0" * 100, "😀" * 500, "a" * 5000, "中" * 5000]
    for text in odd:
        for check in FILTERS.values():
            reason = check(text, FC)
            assert reason is None or reason.isidentifier()
    assert filter_char_ngram_repetition("中" * 5000, FC) == "char_ngram_repetition"


def test_registry_order_and_first_reason():
    assert list(FILTERS) == [
        "length",
        "replacement_chars",
        "mojibake",
        "language",
        "han_count",
        "han_ratio",
        "spam",
        "product_listing",
        "duplicated_lines",
        "char_ngram_repetition",
    ]
    for check in FILTERS.values():
        assert check(PROSE_TW, FC) is None
        assert check(NEWS_CN, FC) is None
    assert first_drop_reason(PROSE_TW, FC) is None
    assert first_drop_reason("", FC) == "empty"
    assert first_drop_reason(GAMBLING_TW, FC) == "spam"


# --- real data ---------------------------------------------------------------------------------


def _docs(path, key="text"):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)[key] for line in f]


def _reasons(docs):
    reasons = Counter()
    for doc in docs:
        text, _ = remove_boilerplate_lines(clean_text(doc, CLEAN), CLEAN)
        reasons[first_drop_reason(text, FC)] += 1
    return reasons


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["wiki_drcd", "legal_mojlaw"])
def test_real_zh_tw_is_kept(shared_data, name):
    docs = _docs(shared_data / "corpus" / "eval" / f"{name}.jsonl.gz")
    reasons = _reasons(docs)
    assert reasons[None] / len(docs) >= 0.97, reasons
    assert reasons["spam"] == 0


@pytest.mark.shared_data
def test_real_common_crawl_spam_is_caught(shared_data):
    path = shared_data / "web" / "chinesewebtext_cc_2021-43.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    flagged = {r["url"] for r in rows if filter_spam(clean_text(r["raw_content"], CLEAN), FC)}
    assert len(flagged) >= 8
    # pages verified by hand to be gambling SEO spam
    assert {
        "http://335.3355703.com/news/2022/0314/61491.html",  # 威尼斯人现金网
        "https://www.baiduoh.com/_t265/2022/0222/c3403a60531/page.htm",  # 吕氏贵宾会
        "https://www.dmahora.com/media/18770.html",  # js333金沙线路
    } <= flagged
    assert "https://news.mydrivers.com/1/667/667116.htm" not in flagged  # a car review
