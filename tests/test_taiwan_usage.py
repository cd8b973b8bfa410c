"""Issue 12, a corpus that reads like Taiwan: origin-aware output, keyword-footer spam, product
listings, s2twp over-conversions, the mainland-usage score and inspectable drops."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import opencc
import pytest

from zhtw.corpus.cli import main
from zhtw.corpus.config import CleanConfig, FilterConfig
from zhtw.corpus.script import Converter, load_phrase_overrides
from zhtw.corpus.text import (
    clean_text,
    filter_product_listing,
    filter_spam,
    mainland_terms,
    mainland_usage,
    remove_boilerplate_lines,
    spam_injection,
    tag_lines,
)

CLEAN, FC = CleanConfig(), FilterConfig()
CCNET = "web/chinesewebtext_cc_2021-43.jsonl.gz"

# Real lines of the CCNet sample (chinesewebtext_cc_2021-43, rows 23, 32 and 34).
ARTICLE_CN = (
    "德邦物流能否成功代替快递巨头顺丰？\n"
    "回应：过去的两三年，我们显然在筹划租车业务。今年10月底不会在一些区域和城市上线，但只是小范围试点，"
    "德邦物流的快递业务还在起步阶段，与顺丰相比在网络覆盖和时效上仍有差距，需要时间追赶。"
)
FOOTERS = [
    "本文关键词：欧宝体育app,德邦,物流,能否,成功,代替,快递,巨头,顺丰,【",
    "本文关键词：娃娃,菜炒,必威betway中文版,香菇,炒,牛肉,泡椒,炒香,干,洋葱",
    "本文关键词：华体会官网,国科,嘉,和,王戈,疫情,影响,“,三驾马车,”",
]


def _clean(text: str) -> str:
    return remove_boilerplate_lines(clean_text(text, CLEAN), CLEAN)[0]


def _ccnet(shared_data: Path) -> list[dict]:
    with gzip.open(shared_data / CCNET, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# --- keyword footers and injected brands ------------------------------------------------------


@pytest.mark.parametrize("footer", [*FOOTERS, "Tags: 满客通宋英君营销方案", "相關搜尋：台北 美食 推薦"])
def test_keyword_footer_lines_are_boilerplate(footer: str) -> None:
    page = ARTICLE_CN + "\n" + footer
    assert tag_lines(page, CLEAN.max_boilerplate_line_chars) == [footer]
    assert _clean(page) == ARTICLE_CN


@pytest.mark.parametrize("footer", FOOTERS)
def test_brand_in_keyword_footer_is_spam_injection(footer: str) -> None:
    page = ARTICLE_CN + "\n" + footer
    assert filter_spam(page, FC) is None  # one brand: below the page-level spam density
    tags = tag_lines(page, CLEAN.max_boilerplate_line_chars)
    assert spam_injection(_clean(page), "", tags, FC) == "spam_injection"
    assert spam_injection(_clean(page), "", tags, FilterConfig(spam_injection=False)) is None


def test_brand_in_title_is_spam_injection_and_plain_tags_are_not() -> None:
    title = "疫情影响“三驾马车”奔速，企业应主动站位_华体会"
    assert spam_injection(ARTICLE_CN, title, [], FC) == "spam_injection"
    tags = ["标签： 世界杯预选赛 南美区 哥伦比亚 玻利维亚 积分 排名"]  # real, harmless
    assert spam_injection(ARTICLE_CN, "", tags, FC) is None


@pytest.mark.shared_data
def test_real_injected_pages_are_caught_and_zh_tw_is_not(shared_data: Path) -> None:
    rows = {r["url"]: r for r in _ccnet(shared_data)}
    for url in (
        "http://www.bjtop1.com/a/yigui/1239.html",  # 欧宝体育app
        "http://www.hzxuqing.com/a/chenggonganli/1294.html",  # 必威betway
        "http://www.jinanleshi.com/a/jishuwenzhang/1511.html",  # 华体会官网
    ):
        raw = clean_text(rows[url]["raw_content"], CLEAN)
        tags = tag_lines(raw, CLEAN.max_boilerplate_line_chars)
        text = _clean(rows[url]["raw_content"])
        assert filter_spam(text, FC) is None, url
        assert spam_injection(text, "", tags, FC) == "spam_injection", url
    for name in ("eval/wiki_drcd", "eval/legal_mojlaw", "train/msdocs_zhtw"):
        with gzip.open(shared_data / "corpus" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                raw = clean_text(json.loads(line)["text"], CLEAN)
                tags = tag_lines(raw, CLEAN.max_boilerplate_line_chars)
                assert spam_injection(_clean(raw), "", tags, FC) is None, (name, raw[:80])


@pytest.mark.shared_data
def test_real_gambling_brands_in_ccnet_titles_are_dropped(shared_data: Path, tmp_path: Path) -> None:
    """Two real CCNet pages whose only spam is the title (币游国际, ope体育): a real run reads the
    title and drops both as spam_injection."""
    rows = [
        r for r in _ccnet(shared_data) if any(b in (r.get("title") or "") for b in ("币游国际", "ope体育"))
    ]
    assert len(rows) == 2
    src = tmp_path / "ccnet.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(src), "--output", str(out), "--workers", "1", "--no-progress", "--keep-dropped"]) == 0
    dropped = _records(out / "dropped")
    assert sorted((r["drop_reason"], r["title"]) for r in dropped) == sorted(
        ("spam_injection", r["title"]) for r in rows
    )
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    dropped_counts = {k: v for k, v in stats["documents"]["dropped"].items() if v}
    assert dropped_counts == {"spam_injection": 2} and stats["documents"]["written"] == 0


# --- product listings -------------------------------------------------------------------------

LISTING = (
    "双立人(ZWILLING) 迷你电饭煲\n赠品1：双立人16cm炖锅*1（含锅盖）\n143条评价\n商品评价(143)\n"
    "主品：外形尺寸：191x282x236mm，煮饭容量：2.0L\n供应商包装，两件配送（主品一件，赠品一件）\n"
    "价格：¥899 包邮"
)


def test_product_listing_is_dropped_and_an_article_about_prices_is_not() -> None:
    assert filter_product_listing(LISTING, FC) == "product_listing"
    article = "颱風過後菜價上漲，高麗菜價格：120元一顆，農委會表示將加強配送，穩定市場供應與價格。" * 3
    assert filter_product_listing(article, FC) is None
    assert filter_product_listing(LISTING, FilterConfig(product_listing_min_signals=0)) is None


@pytest.mark.shared_data
def test_real_product_listing_is_dropped_and_zh_tw_kept(shared_data: Path) -> None:
    rows = {r["url"]: r for r in _ccnet(shared_data)}
    page = _clean(rows["http://www.ocj.com.cn/detail/17150461"]["raw_content"])
    assert filter_product_listing(page, FC) == "product_listing"
    for name in ("eval/wiki_drcd", "eval/legal_mojlaw", "train/msdocs_zhtw", "train/ey_gazette"):
        with gzip.open(shared_data / "corpus" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        dropped = sum(filter_product_listing(_clean(t), FC) is not None for t in texts)
        assert dropped <= 0.001 * len(texts), (name, dropped)


# --- safer conversion -------------------------------------------------------------------------


def test_phrase_overrides_fix_s2twp_over_conversions() -> None:
    plain = Converter("s2twp")
    fixed = Converter("s2twp", phrase_overrides=load_phrase_overrides())
    text = "冰箱分区存放食物，焊缝局部氧化，优抚对象，不胜枚举。"
    assert plain.convert(text, "simplified")[0] == "冰箱分割槽存放食物，焊縫區域性氧化，優撫物件，不勝列舉。"
    assert fixed.convert(text, "simplified")[0] == "冰箱分區存放食物，焊縫局部氧化，優撫對象，不勝枚舉。"
    # the rest of s2twp's Taiwan phrasing is unchanged, including longer phrases around an override
    assert fixed.convert("软件和信息；面向对象编程", "simplified")[0] == "軟體和資訊；物件導向程式設計"


def test_every_override_row_replaces_the_s2twp_form() -> None:
    table = load_phrase_overrides()
    plain = Converter("s2twp")
    fixed = Converter("s2twp", phrase_overrides=table)
    rows = [
        line.split("\t")
        for line in Path(__file__)
        .parents[1]
        .joinpath("corpus/data/tw_phrase_overrides.tsv")
        .read_text("utf-8")
        .splitlines()
        if line and not line.startswith("#")
    ]
    assert len(rows) == len(table) >= 10
    for phrase, replacement, s2twp_form in rows:
        simplified = opencc.OpenCC("t2s").convert(phrase)
        assert plain.convert(simplified, "simplified")[0] == s2twp_form, phrase
        assert fixed.convert(simplified, "simplified")[0] == replacement, phrase


# --- mainland-usage score ---------------------------------------------------------------------


def test_mainland_score_counts_words_per_1000_han() -> None:
    terms = mainland_terms()
    assert {"質量", "營銷", "小區", "電飯煲", "土豆"} <= set(terms)
    text = "這個小區的電飯煲質量很好，營銷做得也不錯。"  # 19 Han characters, 4 mainland words
    hits, score = mainland_usage(text)
    assert hits == 4 and score == pytest.approx(4000 / 19)
    assert mainland_usage("這個社區的電鍋品質很好，行銷做得也不錯。") == (0, 0.0)


@pytest.mark.shared_data
def test_mainland_score_separates_converted_from_native(shared_data: Path) -> None:
    converter = Converter("s2twp", phrase_overrides=load_phrase_overrides())
    converted = [converter.convert(r["raw_content"], "simplified")[0] for r in _ccnet(shared_data)]
    with gzip.open(shared_data / "corpus/eval/legal_mojlaw.jsonl.gz", "rt", encoding="utf-8") as f:
        native = [json.loads(line)["text"] for line in f]

    def mean(texts: list[str]) -> float:
        return sum(mainland_usage(t)[1] for t in texts) / len(texts)

    assert mean(converted) > 1.0 > 20 * mean(native)
    assert sum(mainland_usage(t)[0] for t in converted) >= 100  # 質量 42x, 營銷 26x ... in this sample


# --- the pipeline: origin split, keep_scripts, --keep-dropped, accounting ---------------------

NATIVE = [
    "農業部今天宣布，針對颱風造成的農損，將提供每公頃三萬元的復耕補助，申請期限至月底為止。受災農民可向各地農會提出申請。",
    "臺北市政府今天公布新的垃圾分類規定，市民須將廚餘與資源回收物分開，違者將處以罰鍰，並於下個月起實施。",
]
SIMPLIFIED = [
    "这个小区的电饭煲质量很好，营销做得也不错，冰箱分区存放食物也很方便，邻居们都说值得购买。",
    "国家统计局今天发布数据，今年前三季度国内生产总值同比增长百分之五，消费和投资都保持稳定增长。",
]
INJECTED = ARTICLE_CN + "\n" + FOOTERS[0]


def _run(tmp_path: Path, name: str, config: str, *extra: str) -> tuple[Path, dict]:
    src = tmp_path / "in.jsonl"
    if not src.exists():
        with open(src, "w", encoding="utf-8") as f:
            for i, text in enumerate([*NATIVE, *SIMPLIFIED, INJECTED, NATIVE[0]]):
                f.write(json.dumps({"text": text, "id": f"d{i}"}, ensure_ascii=False) + "\n")
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(config, encoding="utf-8")
    out = tmp_path / name
    args = [
        "run",
        str(src),
        "--output",
        str(out),
        "--config",
        str(cfg),
        "--workers",
        "1",
        "--no-progress",
        *extra,
    ]
    assert main(args) == 0
    return out, json.loads((out / "stats.json").read_text(encoding="utf-8"))


def _records(folder: Path) -> list[dict]:
    records = []
    for p in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            records.extend(json.loads(line) for line in f)
    return records


def test_origin_split_keep_dropped_and_accounting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, stats = _run(tmp_path, "split", "output:\n  split_by_origin: true\n", "--keep-dropped")
    native, converted = _records(out / "shards" / "native"), _records(out / "shards" / "converted")
    assert sorted(r["text"] for r in native) == sorted(NATIVE)
    assert {r["origin"] for r in native} == {"native"} and {r["origin"] for r in converted} == {"converted"}
    assert len(converted) == 2 and any("分區" in r["text"] and "分割槽" not in r["text"] for r in converted)
    scores = {r["id"]: r["mainland_score"] for r in native + converted}
    assert scores["d2"] >= 50 and scores["d0"] == 0
    # every dropped document is in dropped/<step>/ with its reason and step; the accounting balances
    dropped = _records(out / "dropped")
    by_reason = {}
    for r in dropped:
        by_reason[r["drop_reason"]] = by_reason.get(r["drop_reason"], 0) + 1
    assert by_reason == {k: v for k, v in stats["documents"]["dropped"].items() if v}
    assert {(r["drop_reason"], r["drop_step"], r["id"]) for r in dropped} == {
        ("spam_injection", "spam_injection", "d4"),
        ("exact_duplicate", "exact_dedup", "d5"),
    }
    d = stats["documents"]
    assert d["balanced"] and d["read"] == 6 == d["written"] + sum(d["dropped"].values())
    assert stats["origins"] == {"converted": 2, "native": 3}
    assert sum(stats["mainland_usage"]["documents_by_origin"]["converted"].values()) == 2
    # stats --examples shows the dropped documents per reason; a rerun is a no-op
    assert main(["stats", str(out), "--examples", "1"]) == 0
    printed = capsys.readouterr().out
    assert "== spam_injection ==" in printed and "[spam_injection] d4" in printed
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.gz")}
    _run(tmp_path, "split", "output:\n  split_by_origin: true\n", "--keep-dropped")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.gz")} == before


def test_keep_scripts_drops_other_scripts_with_a_reason(tmp_path: Path) -> None:
    out, stats = _run(tmp_path, "trad", "filters:\n  keep_scripts: [traditional]\n")
    records = _records(out / "shards")
    assert sorted(r["text"] for r in records) == sorted(NATIVE)
    assert stats["documents"]["dropped"]["script_not_kept"] == 2
    assert stats["documents"]["balanced"]
    assert not (out / "dropped").exists()  # only with --keep-dropped
