"""Typed hand-off metadata: the JSON file each stage writes beside its artifact, read back by later stages.

Each artifact has one dataclass, owned by the stage that writes it (`TokenizerMeta` in zhtw.tokenizer.meta,
`PrepareMeta` in zhtw.pretrain.prepare, `ExportMeta` in zhtw.pretrain.export); later stages read it through
that class instead of typing key names. The typed fields are the keys other stages rely on; every other key
of the file is kept in `extra`, so files stay backward compatible (same keys, plus `schema_version`; a file
without one is version 1). Writes are atomic; a missing, damaged or foreign file is refused with one line
that names the file and the command that makes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from zhtw.common.errors import ZhtwError
from zhtw.common.fsutil import atomic_write_json, show_path

__all__ = ["SCHEMA_KEY", "ArtifactMeta", "MetadataError"]

SCHEMA_KEY = "schema_version"
M = TypeVar("M", bound="ArtifactMeta")


class MetadataError(ZhtwError):
    """A metadata file is missing, not JSON, of another artifact or of a newer schema than this zhtw reads."""


@dataclass
class ArtifactMeta:
    """Base of every metadata class: subclasses add typed fields and set the class constants below.

    Subclasses are dataclasses; import `ClassVar` at module level (dataclasses resolves string annotations
    there), or the constants become fields.
    """

    FILENAME: ClassVar[str] = ""
    FORMAT: ClassVar[str | None] = None  # the value of the file's "format" key, when it has one
    SCHEMA: ClassVar[int] = 1  # the newest schema this code writes and reads
    MADE_BY: ClassVar[str] = "zhtw"  # the command that writes the file: named in every refusal

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)

    @classmethod
    def path(cls, directory: str | os.PathLike[str]) -> Path:
        return Path(directory) / cls.FILENAME

    @classmethod
    def read(cls: type[M], directory: str | os.PathLike[str]) -> M:
        """Read and validate `directory/FILENAME`; raise `MetadataError` with the fix otherwise."""
        path = cls.path(directory)
        if not path.is_file():
            raise MetadataError(cls._refusal(path, "is missing"))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise MetadataError(cls._refusal(path, f"cannot be read ({e})")) from e
        return cls.from_dict(data, where=path)

    @classmethod
    def from_dict(cls: type[M], data: Any, *, where: str | os.PathLike[str] = "metadata") -> M:
        """The typed view of a parsed file: format, schema version and each typed field's JSON type checked."""
        path = Path(where)
        if not isinstance(data, dict):
            raise MetadataError(cls._refusal(path, f"holds a JSON {type(data).__name__}, not an object"))
        if cls.FORMAT is not None and data.get("format") != cls.FORMAT:
            raise MetadataError(cls._refusal(path, f"has format {data.get('format')!r}, not {cls.FORMAT!r}"))
        schema = data.get(SCHEMA_KEY, 1)
        if not isinstance(schema, int) or schema > cls.SCHEMA:
            raise MetadataError(
                f"{show_path(path)} has schema_version {schema!r}; this zhtw reads up to {cls.SCHEMA}: "
                "upgrade zhtw (pip install -U zhtw) or rerun the older stage with this version."
            )
        values: dict[str, Any] = {}
        for f in cls._typed_fields():
            if f.name in data:
                values[f.name] = cls._checked(path, f.name, data[f.name], f.metadata.get("json"))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MetadataError(cls._refusal(path, f"has no {f.name!r}"))
        typed = {f.name for f in cls._typed_fields()}
        extra = {k: v for k, v in data.items() if k not in typed and k != SCHEMA_KEY}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object: every key it had, the typed fields, the schema version."""
        data = dict(self.extra)
        if self.FORMAT is not None:
            data.setdefault("format", self.FORMAT)
        data.update({f.name: getattr(self, f.name) for f in self._typed_fields()})
        data[SCHEMA_KEY] = self.SCHEMA
        return data

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Write the file atomically (a crash leaves the old file or the new one, never a torn one)."""
        path = self.path(directory)
        atomic_write_json(path, json.loads(json.dumps(self.to_dict(), default=str)))
        return path

    def get(self, key: str, default: Any = None) -> Any:
        """Any key of the file, typed or not (for keys no later stage depends on)."""
        typed = {f.name for f in self._typed_fields()}
        return getattr(self, key) if key in typed else self.extra.get(key, default)

    @classmethod
    def _typed_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def _refusal(cls, path: Path, what: str) -> str:
        return f"{show_path(path)} {what}; it is written by {cls.MADE_BY}: rerun that (or give its output directory)."

    @classmethod
    def _checked(cls, path: Path, key: str, value: Any, want: type | tuple[type, ...] | None) -> Any:
        if want is None or isinstance(value, want) and not (isinstance(value, bool) and bool not in _tuple(want)):
            return value
        names = " or ".join(t.__name__ for t in _tuple(want))
        raise MetadataError(
            f"{show_path(path)}: {key!r} is {value!r} ({type(value).__name__}), expected {names}; "
            f"the file is damaged: rerun {cls.MADE_BY}."
        )


def _tuple(want: type | tuple[type, ...]) -> tuple[type, ...]:
    return want if isinstance(want, tuple) else (want,)


def typed(json_type: type | tuple[type, ...], **kwargs: Any) -> Any:
    """A dataclass field whose JSON value must be of `json_type` when read (int fields: give (int,))."""
    return field(metadata={"json": json_type}, **kwargs)
