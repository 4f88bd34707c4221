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


def unpack(value: bytes | None) -> dict:
    """msgpack (or, for external producers, a JSON object) into a dict."""
    if value is None:
        raise SchemaError("message has no value", "undecodable")
    try:
        data = msgpack.unpackb(value, raw=False, strict_map_key=False)
    except UnicodeDecodeError as exc:
        raise SchemaError(f"invalid UTF-8 in a string field: {exc}", "invalid_utf8") from exc
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        if value[:1] == b"{":
            try:
                data = orjson.loads(value)
            except orjson.JSONDecodeError as jexc:
                if isinstance(jexc.__cause__, UnicodeDecodeError) or "utf-8" in str(jexc).lower():
                    raise SchemaError(f"invalid UTF-8 in JSON value: {jexc}", "invalid_utf8") from jexc
                raise SchemaError(f"undecodable value (neither msgpack nor JSON): {jexc}", "undecodable") from jexc
        else:
            raise SchemaError(f"undecodable value (not msgpack): {exc}", "undecodable") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"value is a {type(data).__name__}, not a record", "schema")
    return data


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
    version = data.get("schema_version", 1)
    if isinstance(version, int) and version > cls.version:
        log.debug("%s: reading schema_version %s with reader version %s", cls.kind, version, cls.version)
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
