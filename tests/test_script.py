"""Script detection from OpenCC's tables and conversion that never damages Traditional text."""

from __future__ import annotations

import gzip
import json
import os
import pickle

import pytest

from zhtw.corpus.script import (
    Converter,
    ScriptResult,
    detect_script,
    opencc_share_dir,
    read_ocd2_values,
    script_tables,
)

TRAD = "臺灣的資訊產業發展迅速，我們這個團隊專門開發軟體，對象是各種規模的企業。"
SIMP = "这个软件的信息很有用，我们团队专门为各种规模的企业开发应用程序。"


def test_ocd2_values_are_read_with_their_alternatives():
    values = read_ocd2_values(os.path.join(opencc_share_dir(), "STCharacters.ocd2"))
    assert len(values) > 3000
    assert ["發", "髮"] in values  # 发 -> 發 (default) or 髮
    assert ["後", "后"] in values  # 后 -> 後 (default), or stays 后 (皇后)


def test_script_sets():
    tables = script_tables()
    assert not tables.simplified_only & tables.traditional_only
    assert set("们这说国发会对软") <= tables.simplified_only
    assert set("們這說國發會對軟") <= tables.traditional_only
    # one-to-many: valid Traditional characters that s2t would change in isolation
    assert not set("后里台面干余云") & tables.simplified_only
    assert script_tables() is tables  # built once per process


def test_detect_labels_and_counts():
    trad = detect_script(TRAD)
    assert trad.label == "traditional" and trad.simplified == 0 and trad.traditional > 5
    simp = detect_script(SIMP)
    assert simp.label == "simplified" and simp.traditional == 0 and simp.simplified > 5
    assert detect_script(TRAD + SIMP).label == "mixed"
    assert detect_script("Hello, world. 123") == ScriptResult("none", 0, 0)
    assert detect_script("中文大人").label == "none"  # only characters shared by both scripts
    assert detect_script(TRAD + "们", min_ratio=0.9).label == "traditional"
    assert detect_script("們这", min_chars=3).label == "none"


def test_s2twp_converts_simplified_to_taiwan_phrasing():
    text, action = Converter("s2twp").convert("这个软件的信息", "simplified")
    assert (text, action) == ("這個軟體的資訊", "s2twp")
    text, action = Converter("s2tw").convert("这个软件的信息", "simplified")
    assert (text, action) == ("這個軟件的信息", "s2tw")


def test_traditional_is_never_run_through_s2t():
    converter = Converter("s2twp")
    assert converter.convert(TRAD, "traditional") == (TRAD, "none")
    assert "對象" in converter.convert(TRAD, detect_script(TRAD).label)[0]
    # what s2twp would have done
    assert "物件" in Converter("s2twp").convert(TRAD, "simplified")[0]


def test_normalize_traditional_uses_t2tw():
    text, action = Converter(normalize_traditional=True).convert("我們的對象在裏面。", "traditional")
    assert (text, action) == ("我們的對象在裡面。", "t2tw")


def test_off_converts_nothing():
    converter = Converter("off", normalize_traditional=False)
    for label in ("simplified", "mixed", "traditional", "none"):
        assert converter.convert(SIMP, label) == (SIMP, "none")


def test_mixed_and_none():
    mixed = "台北市里長了解對象的需求。\n他说：“这个软件的信息很有用。”\n臺灣的對象是企業，这个问题。"
    text, action = Converter("s2twp").convert(mixed, "mixed")
    assert action == "s2tw"
    assert text == "台北市里長了解對象的需求。\n他說：“這個軟件的信息很有用。”\n臺灣的對象是企業，這個問題。"
    assert not set(text) & script_tables().simplified_only
    assert Converter(convert_mixed=False).convert(mixed, "mixed") == (mixed, "none")
    assert Converter().convert("Hello 123", "none") == ("Hello 123", "none")
    with pytest.raises(ValueError, match="unknown script label"):
        Converter().convert(SIMP, "klingon")
    with pytest.raises(ValueError, match="convert must be"):
        Converter("s2hk")


def test_conversion_loses_nothing_at_nul_or_surrogates():
    # OpenCC itself stops at NUL and cannot encode lone surrogates
    assert Converter().convert("软件\0信息", "simplified") == ("軟體\0資訊", "s2twp")
    assert Converter().convert("软\ud800件", "simplified") == ("軟體", "s2twp")


def test_converter_pickles_before_and_after_use():
    fresh = Converter("s2twp", normalize_traditional=True)
    clone = pickle.loads(pickle.dumps(fresh))
    assert clone.convert("软件", "simplified") == ("軟體", "s2twp")
    used = pickle.loads(pickle.dumps(clone))  # its OpenCC objects are dropped, recreated on use
    assert used.convert("裏面", "traditional") == ("裡面", "t2tw")
    assert repr(used) == (
        "Converter(convert='s2twp', normalize_traditional=True, convert_mixed=True, phrase_overrides=0)"
    )


def _texts(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


@pytest.mark.shared_data
def test_real_detection(shared_data):
    eval_dir = shared_data / "corpus" / "eval"
    wiki = [detect_script(t).label for t in _texts(eval_dir / "wiki_drcd.jsonl.gz")]
    assert wiki.count("traditional") / len(wiki) >= 0.99
    web = [detect_script(t).label for t in _texts(eval_dir / "zhcn_web_cc.jsonl.gz")]
    assert web.count("simplified") / len(web) >= 0.9


@pytest.mark.shared_data
def test_real_simplified_converted_has_no_simplified_only_characters(shared_data):
    simplified_only = script_tables().simplified_only
    converter = Converter("s2twp")
    for text in _texts(shared_data / "corpus" / "eval" / "zhcn_web_cc.jsonl.gz"):
        result = detect_script(text)
        converted, action = converter.convert(text, result.label)
        assert action in ("s2twp", "s2tw")
        assert not set(converted) & simplified_only
        assert detect_script(converted).label == "traditional"
