"""Typed configuration of the corpus stage, loaded from YAML.

Every section is a dataclass whose defaults are the documented defaults (``default.yaml`` mirrors
them, and a test keeps the two equal). Loading is strict: an unknown key at any level, a value of
the wrong type or a value outside its allowed range raises :class:`ConfigError` with the file, the
key and what to write instead. Classes that use the config take the section they need (builders
pass flat arguments), never the whole object.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zhtw.common.errors import ZhtwError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")
SCRIPT_LABELS = ("traditional", "simplified", "mixed", "none")  # = zhtw.corpus.script.LABELS


class ConfigError(ValueError, ZhtwError):
    """A configuration file or value is invalid; the message says where and how to fix it."""


def _opt(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **checks: Any) -> Any:
    """A dataclass field carrying validation rules (choices, min, max, min_exclusive) as metadata."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=checks)
    return field(default=default, metadata=checks)


class _Section:
    """Validates field types and the declared rules when a section is constructed."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            value = _check_type(f.name, value, hints[f.name])
            setattr(self, f.name, value)
            _check_rules(f.name, value, f.metadata)
        self._check()

    def _check(self) -> None:
        """Cross-field checks of one section (overridden where needed)."""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"a list of {typing.get_args(tp)[0].__name__}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]


def _check_type(name: str, value: Any, tp: Any) -> Any:
    """Return ``value`` coerced to ``tp`` where lossless (int -> float), else raise ConfigError."""
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be {_type_name(tp)}, got {value!r}")
        return [_check_type(f"{name}[{i}]", v, item_tp) for i, v in enumerate(value)]
    ok = isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(f"{name} must be {_type_name(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):
        # .nan fails every comparison, so a NaN threshold would silently switch its filter off
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return value


def _check_rules(name: str, value: Any, rules: typing.Mapping[str, Any]) -> None:
    if "choices" in rules and value not in rules["choices"]:
        options = ", ".join(repr(c) for c in rules["choices"])
        raise ConfigError(f"{name} must be one of {options}, got {value!r}")
    if "min" in rules and value < rules["min"]:
        raise ConfigError(f"{name} must be >= {rules['min']}, got {value!r}")
    if "min_exclusive" in rules and value <= rules["min_exclusive"]:
        raise ConfigError(f"{name} must be > {rules['min_exclusive']}, got {value!r}")
    if "max" in rules and value > rules["max"]:
        raise ConfigError(f"{name} must be <= {rules['max']}, got {value!r}")


@dataclass
class InputConfig(_Section):
    """How documents are read."""

    text_key: str = "text"
    fallback_text_keys: list[str] = _opt(factory=lambda: ["raw_content"])
    html_extractor: str = _opt("resiliparse", choices=("resiliparse", "trafilatura"))
    max_doc_chars: int = _opt(1_000_000, min=1)
    max_unit_bytes: int = _opt(0, min=0)

    def unit_bytes(self) -> int:
        """The reader's cap on one unit (JSONL line, WARC record, text file) once decompressed:
        `max_unit_bytes`, or when that is 0, :func:`derived_unit_bytes` of `max_doc_chars`."""
        return self.max_unit_bytes or derived_unit_bytes(self.max_doc_chars)


def derived_unit_bytes(max_doc_chars: int) -> int:
    """6 bytes per allowed character plus 1 MiB: a character is at most 4 bytes of UTF-8 but 6 in a
    JSON ``\\uXXXX`` escape (Chinese in ``ensure_ascii`` JSONL), and the slack covers JSON fields,
    WARC/HTTP headers and markup, so a document within `max_doc_chars` is never refused as too large."""
    return 6 * max_doc_chars + (1 << 20)


@dataclass
class CleanConfig(_Section):
    """Options of :func:`zhtw.corpus.text.clean_text` and :func:`remove_boilerplate_lines`."""

    max_consecutive_newlines: int = _opt(2, min=1)
    collapse_spaces: bool = True
    remove_boilerplate: bool = True
    max_boilerplate_line_chars: int = _opt(100, min=1)
    extra_boilerplate_patterns: list[str] = _opt(factory=list)
    remove_repeated_lines: bool = True
    max_repeated_line_chars: int = _opt(40, min=1)
    max_repeated_line_share: float = _opt(0.1, min=0.0, max=1.0)

    def _check(self) -> None:
        for i, pattern in enumerate(self.extra_boilerplate_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"extra_boilerplate_patterns[{i}] is not a valid Python regular expression "
                    f"({exc}): {pattern!r}; escape special characters such as | ( ) [ ] with a backslash"
                ) from None


@dataclass
class FilterConfig(_Section):
    """Thresholds of the quality filters in :data:`zhtw.corpus.text.FILTERS`."""

    max_chars: int = _opt(500_000, min=1)
    min_han_chars: int = _opt(20, min=0)
    min_han_ratio: float = _opt(0.5, min=0.0, max=1.0)
    ngram_n: int = _opt(20, min=2)
    max_ngram_dup_fraction: float = _opt(0.35, min=0.0, max=1.0)
    max_duplicate_line_fraction: float = _opt(0.3, min=0.0, max=1.0)
    max_duplicate_line_char_fraction: float = _opt(0.2, min=0.0, max=1.0)
    spam_use_builtin_keywords: bool = True
    spam_extra_keywords: list[str] = _opt(factory=list)
    spam_min_hits: int = _opt(2, min=1)
    spam_min_density: float = _opt(2.0, min=0.0)
    spam_min_distinct: int = _opt(3, min=1)
    max_mojibake_fraction: float = _opt(0.01, min=0.0, max=1.0)
    max_rare_han_fraction: float = _opt(0.25, min=0.0, max=1.0)
    max_replacement_char_fraction: float = _opt(0.002, min=0.0, max=1.0)
    max_kana_fraction: float = _opt(0.1, min=0.0, max=1.0)
    max_hangul_fraction: float = _opt(0.1, min=0.0, max=1.0)
    max_cantonese_fraction: float = _opt(0.03, min=0.0, max=1.0)
    spam_injection: bool = True
    product_listing_min_signals: int = _opt(3, min=0, max=4)
    max_mainland_per_1000_han: float = _opt(0.0, min=0.0)
    mainland_min_han: int = _opt(200, min=0)
    keep_scripts: list[str] = _opt(factory=lambda: list(SCRIPT_LABELS))

    def _check(self) -> None:
        for i, kw in enumerate(self.spam_extra_keywords):
            if not kw.strip():
                raise ConfigError(f"spam_extra_keywords[{i}] is empty; remove it or give a keyword")
        for i, label in enumerate(self.keep_scripts):
            if label not in SCRIPT_LABELS:
                options = ", ".join(SCRIPT_LABELS)
                raise ConfigError(f"keep_scripts[{i}] must be one of {options}, got {label!r}")
        if not self.keep_scripts:
            raise ConfigError(
                "keep_scripts is empty, so every document would be dropped; list the "
                f"scripts to keep ({', '.join(SCRIPT_LABELS)})"
            )


@dataclass
class ScriptConfig(_Section):
    """Script detection thresholds and conversion choices (see :mod:`zhtw.corpus.script`)."""

    convert: str = _opt("s2twp", choices=("s2twp", "s2tw", "off"))
    normalize_traditional: bool = False
    convert_mixed: bool = True
    min_script_ratio: float = _opt(0.9, min_exclusive=0.5, max=1.0)
    min_script_chars: int = _opt(1, min=1)
    phrase_overrides: bool = True


@dataclass
class DedupConfig(_Section):
    """Exact and MinHash near-duplicate removal across the whole run."""

    exact: bool = True
    near: bool = True
    ngram: int = _opt(5, min=1)
    num_buckets: int = _opt(14, min=1)
    hashes_per_bucket: int = _opt(8, min=1)
    seed: int = _opt(1, min=0)


_COMPRESSIONS = {
    "jsonl": ("gzip", "zstd", "none"),
    "parquet": ("snappy", "gzip", "zstd", "brotli", "lz4", "none"),
}


@dataclass
class OutputConfig(_Section):
    """Output shards."""

    format: str = _opt("jsonl", choices=("jsonl", "parquet"))
    max_file_size_mb: int = _opt(256, min=1)
    compression: str = "gzip"
    split_by_origin: bool = False
    keep_dropped: bool = False

    def _check(self) -> None:
        allowed = _COMPRESSIONS[self.format]
        if self.compression not in allowed:
            options = ", ".join(repr(c) for c in allowed)
            raise ConfigError(
                f"compression {self.compression!r} is not available for format {self.format!r}; "
                f"use one of {options}"
            )


@dataclass
class CorpusConfig:
    """The whole corpus-stage configuration."""

    input: InputConfig = field(default_factory=InputConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    script: ScriptConfig = field(default_factory=ScriptConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


_SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(CorpusConfig)}  # type: ignore[misc]


def _unknown_key(key: str, where: str, valid: typing.Iterable[str], source: str) -> ConfigError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"{source}: unknown key '{where}{key}'{hint} Valid keys{' in ' + where.rstrip('.') if where else ''}: "
        f"{', '.join(valid)}"
    )


def config_from_dict(data: typing.Mapping[str, Any] | None, source: str = "<dict>") -> CorpusConfig:
    """Build a validated :class:`CorpusConfig` from nested mappings; missing keys take defaults."""
    data = {} if data is None else data
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    sections: dict[str, Any] = {}
    for name, values in data.items():
        if name not in _SECTIONS:
            raise _unknown_key(str(name), "", _SECTIONS, source)
        cls = _SECTIONS[name]
        values = {} if values is None else values
        if not isinstance(values, typing.Mapping):
            raise ConfigError(f"{source}: section '{name}' must be a mapping of keys, got {values!r}")
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in valid:
                raise _unknown_key(str(key), f"{name}.", valid, source)
        try:
            sections[name] = cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {name}.{exc}") from None
    return CorpusConfig(**sections)


def load_config(path: str | Path | None = None) -> CorpusConfig:
    """Load and validate a YAML config; ``None`` gives the defaults (equal to ``default.yaml``)."""
    if path is None:
        return CorpusConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte {exc.start}); save the config as UTF-8 YAML"
        ) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}{_yaml_where(exc)}: not valid YAML: {_yaml_problem(exc)}") from None
    return config_from_dict(data, source=str(path))


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (PyYAML keeps the last
    silently, so a threshold set near the top of a long file would be ignored without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{key}' is given twice; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_where(exc: yaml.YAMLError) -> str:
    """', line L, column C' of a YAML error (1-based), or '' when PyYAML does not know."""
    mark = getattr(exc, "problem_mark", None)
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: its problem and context, without the quoted source excerpt."""
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    text = "; ".join(p for p in parts if p) or str(exc)
    return " ".join(text.split())


def config_to_dict(cfg: CorpusConfig) -> dict[str, Any]:
    """Plain nested dict of ``cfg`` (YAML/JSON serialisable; loads back to an equal config)."""
    return dataclasses.asdict(cfg)
