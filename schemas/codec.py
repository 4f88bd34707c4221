"""Wire format: msgpack for records on topics, orjson for JSON views and the project's JSON-lines corpora."""

from __future__ import annotations

import base64
import logging
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import orjson
from pydantic import ValidationError

from scenestream.schemas.records import Record

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Record)
_warned_unknown: set[tuple[str, str]] = set()


class SchemaError(ValueError):
    """A value that is not a valid record; the reason goes into the dead letter."""

    def __init__(self, reason: str, error_type: str = "schema") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type


def encode(record: Record) -> bytes:
    """The record as msgpack bytes (with its ``schema_version``)."""
    data = record.model_dump(mode="python", exclude_none=True)
    data["schema_version"] = type(record).version
    return msgpack.packb(data, use_bin_type=True)


_JSON_KINDS = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    type(None): "null",
}


def _preview(text: str, limit: int = 40) -> str:
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def unpack(value: bytes | None) -> dict:
    """msgpack (or, for external producers, a JSON object) into a dict. Anything else is refused with a
    reason that names what the value really is: empty, whitespace, JSON that is not an object, plain
    text, msgpack that is not a map, or binary."""
    if value is None:
        raise SchemaError("message has no value", "undecodable")
    if not value:
        raise SchemaError("value is empty (0 bytes), not a record", "undecodable")
    packed: Any = _NOTHING
    try:
        packed = msgpack.unpackb(value, raw=False, strict_map_key=False)
    except UnicodeDecodeError as exc:
        raise SchemaError(f"invalid UTF-8 in a string field: {exc}", "invalid_utf8") from exc
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError):
        pass
    if isinstance(packed, dict):
        return packed
    # a msgpack map never decodes as UTF-8 (its first byte is not a character's), so from here on text is text
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        if value.lstrip()[:1] == b"{":
            raise SchemaError(f"invalid UTF-8 in JSON value: {exc}", "invalid_utf8") from exc
        if packed is not _NOTHING:
            raise SchemaError(f"value is msgpack {type(packed).__name__}, not a record (a map)", "schema") from None
        raise SchemaError(
            f"value is binary ({len(value)} bytes): neither msgpack nor UTF-8 text", "undecodable"
        ) from None
    if not text.strip():
        raise SchemaError(f"value is whitespace only ({len(value)} bytes), not a record", "undecodable")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if text.lstrip().startswith("{"):
            raise SchemaError(
                f"value is text that starts like a JSON object but is not JSON: {exc}", "undecodable"
            ) from exc
        raise SchemaError(
            f"value is plain text ({len(value)} bytes: {_preview(text)}), not msgpack or JSON", "undecodable"
        ) from exc
    if not isinstance(parsed, dict):
        kind = _JSON_KINDS.get(type(parsed), type(parsed).__name__)
        raise SchemaError(f"value is JSON ({kind}), not a record (a JSON object)", "schema")
    return parsed


_NOTHING = object()


@cache
def _fields(cls: type[Record]) -> tuple[frozenset[str], frozenset[str]]:
    """(all field names, names of plain ``str`` fields) of a record class."""
    fields = cls.model_fields
    return frozenset(fields), frozenset(name for name, f in fields.items() if f.annotation is str)


def decode(value: bytes | None, cls: type[R]) -> R:
    """Bytes into a record of ``cls``; raises :class:`SchemaError` with a clear reason."""
    data = unpack(value)
    names, str_fields = _fields(cls)
    for key, item in data.items():
        if isinstance(item, bytes) and key in str_fields:
            try:
                data[key] = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SchemaError(f"field {key!r} is not valid UTF-8: {exc}", "invalid_utf8") from exc
    if not data.keys() <= names:
        for name in data.keys() - names:
            if (cls.kind, name) not in _warned_unknown:
                _warned_unknown.add((cls.kind, name))
                log.info("%s: ignoring unknown field %r", cls.kind, name)
    version = data.setdefault("schema_version", 1)  # written before records carried their version
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaError(f"schema_version is {version!r}, not an integer", "schema")
    if version > cls.version:
        # a newer writer may have changed what a field means: refuse rather than misread it
        raise SchemaError(
            f"{cls.kind} schema_version {version} is newer than this reader's {cls.version}: "
            "upgrade scenestream on this worker",
            "schema_version",
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise SchemaError(f"not a valid {cls.kind} record: {problems}", "schema") from exc


def to_jsonable(obj: Any) -> Any:
    """Bytes become ``{"base64": ...}`` (or text when they are UTF-8) so any record prints."""
    if isinstance(obj, Record):
        obj = obj.model_dump(mode="python", exclude_none=True)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(obj).decode()}
    return obj


def to_json(obj: Any, pretty: bool = False) -> str:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(to_jsonable(obj), option=option | orjson.OPT_NON_STR_KEYS).decode()


def read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSON-lines file (blank lines skipped); a malformed line is an error naming it."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({exc})") from None
    return rows
