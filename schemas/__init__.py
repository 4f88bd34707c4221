"""Versioned records for every topic, and the dead-letter envelope.

msgpack on the wire, orjson for JSON views. Every record carries
``schema_version``; readers drop unknown fields (logged once per field) and
reject records missing a required field with :class:`SchemaError`, which the
backbone turns into a dead letter.
"""

from scenestream.schemas.codec import SchemaError, decode, encode, to_json, to_jsonable
from scenestream.schemas.records import (
    DeadLetter,
    Hypertoken,
    LoraOutput,
    MemoryEvent,
    RawText,
    Record,
    RegisterWeight,
    Scene,
    SceneField,
    Tokens,
    new_message_id,
)

__all__ = [
    "DeadLetter",
    "Hypertoken",
    "LoraOutput",
    "MemoryEvent",
    "RawText",
    "Record",
    "RegisterWeight",
    "Scene",
    "SceneField",
    "SchemaError",
    "Tokens",
    "decode",
    "encode",
    "new_message_id",
    "to_json",
    "to_jsonable",
]
