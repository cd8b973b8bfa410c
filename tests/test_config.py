"""Corpus config: defaults, default.yaml, strict loading with errors that say what to fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from zhtw.corpus.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    CorpusConfig,
    FilterConfig,
    ScriptConfig,
    config_to_dict,
    load_config,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "corpus.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_yaml_equals_dataclass_defaults():
    assert load_config(DEFAULT_CONFIG_PATH) == CorpusConfig()
    assert load_config(None) == CorpusConfig()


def test_default_yaml_lists_and_documents_every_key():
    lines = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8").splitlines()
    data = yaml.safe_load("\n".join(lines))
    for section in dataclasses.fields(CorpusConfig):
        keys = [f.name for f in dataclasses.fields(section.default_factory())]
        assert list(data[section.name]) == keys, f"default.yaml section {section.name} out of date"
    # every key line is preceded by a comment line or by another key of the same commented group
    for i, line in enumerate(lines):
        if line.startswith("  ") and not line.lstrip().startswith("#") and ":" in line:
            block = lines[max(0, i - 6) : i]
            assert any(prev.lstrip().startswith("#") for prev in block), f"undocumented: {line.strip()}"


def test_partial_file_takes_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "filters:\n  min_han_chars: 50\nscript:\n  convert: s2tw\n"))
    assert cfg.filters.min_han_chars == 50
    assert cfg.script.convert == "s2tw"
    assert cfg.filters.min_han_ratio == FilterConfig().min_han_ratio
    assert cfg.dedup == CorpusConfig().dedup


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == CorpusConfig()
    assert load_config(write(tmp_path, "clean:\n")) == CorpusConfig()


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "filter:\n  min_han_chars: 10\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "'filter'" in msg and "did you mean 'filters'" in msg
    for section in ("input", "clean", "filters", "script", "dedup", "output"):
        assert section in msg


def test_unknown_nested_key(tmp_path):
    path = write(tmp_path, "filters:\n  min_han_char: 10\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "filters.min_han_char" in msg
    assert "did you mean 'min_han_chars'" in msg
    assert "max_ngram_dup_fraction" in msg  # lists the valid keys of the section


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("filters:\n  min_han_ratio: -0.1\n", "filters.min_han_ratio must be >= 0.0"),
        ("filters:\n  min_han_ratio: 1.5\n", "filters.min_han_ratio must be <= 1.0"),
        ("script:\n  convert: s2hk\n", "script.convert must be one of 's2twp', 's2tw', 'off'"),
        ("filters:\n  min_han_chars: '20'\n", "filters.min_han_chars must be an integer"),
        ("filters:\n  min_han_chars: true\n", "filters.min_han_chars must be an integer"),
        ("clean:\n  collapse_spaces: 1\n", "clean.collapse_spaces must be true or false"),
        ("input:\n  fallback_text_keys: raw_content\n", "input.fallback_text_keys must be a list of str"),
        ("input:\n  html_extractor: bs4\n", "'resiliparse', 'trafilatura'"),
        ("output:\n  compression: snappy\n", "not available for format 'jsonl'"),
        ("clean:\n  extra_boilerplate_patterns: ['首頁 | (']\n", "not a valid Python regular expression"),
        ("dedup:\n  num_buckets: 0\n", "dedup.num_buckets must be >= 1"),
        ("filters: [1, 2]\n", "section 'filters' must be a mapping"),
        ("- a\n- b\n", "top level must be a mapping"),
    ],
)
def test_bad_values_name_key_and_fix(tmp_path, yaml_text, expected):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_int_accepted_for_float(tmp_path):
    cfg = load_config(write(tmp_path, "filters:\n  min_han_ratio: 1\n"))
    assert cfg.filters.min_han_ratio == 1.0 and isinstance(cfg.filters.min_han_ratio, float)


def test_parquet_compression(tmp_path):
    cfg = load_config(write(tmp_path, "output:\n  format: parquet\n  compression: snappy\n"))
    assert (cfg.output.format, cfg.output.compression) == ("parquet", "snappy")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "filters: [unclosed\n"))


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="min_script_ratio must be > 0.5"):
        ScriptConfig(min_script_ratio=0.5)
    assert FilterConfig(min_han_chars=5).min_han_chars == 5


def test_config_to_dict_round_trips_through_yaml(tmp_path):
    cfg = load_config(
        write(tmp_path, "filters:\n  spam_extra_keywords: [賭盤]\noutput:\n  format: parquet\n")
    )
    data = config_to_dict(cfg)
    assert data["filters"]["spam_extra_keywords"] == ["賭盤"]
    dumped = write(tmp_path, yaml.safe_dump(data, allow_unicode=True))
    assert load_config(dumped) == cfg


def test_keep_scripts_is_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("filters:\n  keep_scripts: [traditional, simplifed]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"keep_scripts\[1\] must be one of traditional"):
        load_config(path)
    path.write_text("filters:\n  keep_scripts: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="keep_scripts is empty"):
        load_config(path)
    path.write_text("filters:\n  keep_scripts: [traditional]\noutput:\n  split_by_origin: true\n")
    cfg = load_config(path)
    assert cfg.filters.keep_scripts == ["traditional"] and cfg.output.split_by_origin
