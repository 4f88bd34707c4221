"""The records that flow between stages (the README's "Records" table).

Records are immutable. ``message_id`` is set once at ingest (:class:`RawText`)
and carried by every later record; from the scene on, ``scene_id`` is
deterministic so reprocessing after a crash is idempotent.
"""

from __future__ import annotations

import time
import uuid
import warnings
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _known_register(name: str) -> str:
    """A register name this stack's catalogue holds (read when the record is, so registers added while the
    stack runs are known at once)."""
    from scenestream.schemas.registers import catalogue

    known = catalogue()
    if name not in known:
        raise ValueError(known.unknown(name))
    return name


def __getattr__(name: str) -> Any:
    """``REGISTERS`` and ``SYMBOLS``: the catalogue's names and symbols as they are at the moment of the import
    (kept for old imports; code that must see registers added while it runs calls ``catalogue()``)."""
    if name in ("REGISTERS", "SYMBOLS"):
        from scenestream.schemas.registers import catalogue

        return catalogue().names if name == "REGISTERS" else catalogue().symbols
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


RegisterName = Annotated[str, AfterValidator(_known_register)]

# The records name a field "register" (the design's word); it shadows the
# rarely used BaseModel.register ABC hook, which pydantic warns about.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


MAX_NEW_TOKENS_LIMIT = 512  # the most new tokens a message may ask for (prompt and answer share 1024 positions)


def new_message_id() -> str:
    """A fresh message id (UUID7-like: time-ordered hex)."""
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Record(BaseModel):
    """Base of every topic record: frozen, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    kind: ClassVar[str] = "record"
    version: ClassVar[int] = 1

    schema_version: int = 1  # a new record: its class's version (below); a decoded one: what its writer wrote

    @model_validator(mode="before")
    @classmethod
    def _current_version(cls, data: Any) -> Any:
        if isinstance(data, dict) and "schema_version" not in data:
            data = {**data, "schema_version": cls.version}
        return data


class GenerationParams(BaseModel):
    """How one message's answer is generated, set by whoever sends the message (``ask``, the API); each field
    left unset takes the decoder's setting (``SCENESTREAM_MAX_NEW_TOKENS``, ``SCENESTREAM_TEMPERATURE`` …).
    Checked where the message enters the pipeline: a value out of range, or a field this version does not
    know, sends the message to the dead-letter topic with the reason. The final lora-output records the
    values it was generated with, so a replay can generate it again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: Optional[int] = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    stop: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field((), max_length=4)


class RawText(Record):
    """raw-text: one text as it was ingested.

    Version 2: ``params``, the message's own generation parameters (:class:`GenerationParams`).
    """

    kind: ClassVar[str] = "raw_text"
    version: ClassVar[int] = 2
    message_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    text: str
    tenant: str = "default"
    source: str = "api"
    ts_ms: int = Field(default_factory=now_ms)
    replay_of: Optional[str] = None
    force_register: Optional[RegisterName] = None
    params: Optional[GenerationParams] = None


class Part(BaseModel):
    """A value inside a record (versioned with the record that holds it)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Hypertoken(Part):
    text: str
    weight: float


class Tokens(Record):
    """tokens: SentencePiece pieces plus the salient content units. Version 2: ``params`` carried on."""

    kind: ClassVar[str] = "tokens"
    version: ClassVar[int] = 2
    message_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    tenant: str = "default"
    text: str
    normalized: str
    lang: str
    pieces: list[str]
    ids: list[int]
    hypertokens: list[Hypertoken]
    symbols: list[str]
    ts_ms: int
    timings_ms: dict[str, float] = Field(default_factory=dict)
    replay_of: Optional[str] = None
    force_register: Optional[str] = None
    params: Optional[GenerationParams] = None

    @property
    def piece_text(self) -> str:
        """The pieces joined (``почему▁я▁не▁чувствую`` style)."""
        return "".join(self.pieces).lstrip("▁")


class SceneField(Part):
    valence: float = Field(ge=-1.0, le=1.0)
    arousal: float = Field(ge=0.0, le=1.0)
    tension: float = Field(ge=0.0, le=1.0)
    rhythm: str


class RegisterWeight(Part):
    name: RegisterName
    weight: float = Field(ge=0.0, le=1.0)


class Scene(Record):
    """scenes: what the text is about, how it feels, which register answers. Version 2: ``params`` carried on."""

    kind: ClassVar[str] = "scene"
    version: ClassVar[int] = 2
    scene_id: str = Field(min_length=1)
    message_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    tenant: str = "default"
    stage: Literal["formed", "resonated"] = "formed"
    text: str
    lang: str
    hypertokens: list[Hypertoken]
    concepts: list[str] = Field(default_factory=list)
    linkage: str
    delta_code: str
    field: SceneField
    registers: list[RegisterWeight]
    register: str
    resonance: float = 0.0
    echoes: list[dict] = Field(default_factory=list)
    symbol: Optional[str] = None
    builder_version: str = ""
    ts_ms: int
    timings_ms: dict[str, float] = Field(default_factory=dict)
    replay_of: Optional[str] = None
    force_register: Optional[str] = None
    params: Optional[GenerationParams] = None


class LoraOutput(Record):
    """lora-outputs: the answer of one register adapter.

    Version 2 streams: while tokens come, the decoder sends partial records
    (``final`` false, ``text`` the new piece of the answer, ``seq`` 0, 1, …);
    then the final record (``final`` true) with the whole answer, its counts
    and timings, and ``seq`` the number of partials before it. The partials
    joined are always a prefix of the final text. Version 1 records (no
    ``final``) read as final.

    Version 3: the final record says why generation ended (``finish_reason``:
    ``stop`` at the model's end or a stop string, ``sentence`` at a sentence end
    once long enough, ``length`` at the token limit, ``cancelled``) and the
    generation parameters it was made with (``params``, every field resolved).
    A cancelled message's final record has ``cancelled`` true and is never an
    answer. Answers may be sent more than once for one message (after a crash):
    every reader keeps the first final record of a ``message_id`` and treats
    later ones as duplicates.

    Version 4: the final record names the exact adapter weights that wrote it
    (``adapter_version``, ``name@<content hash>``; None for the base model and
    for adapters served by a remote server).
    """

    kind: ClassVar[str] = "lora_output"
    version: ClassVar[int] = 4
    message_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    scene_id: str = Field(min_length=1)
    tenant: str = "default"
    text: str
    register: str
    adapter: str
    adapter_version: Optional[str] = None
    engine: str
    model: str
    delta_code: str
    symbol: Optional[str] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ts_ms: int = Field(default_factory=now_ms)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    replay_of: Optional[str] = None
    final: bool = True
    seq: int = Field(0, ge=0)
    finish_reason: Optional[Literal["stop", "sentence", "length", "cancelled"]] = None
    cancelled: bool = False
    params: Optional[GenerationParams] = None

    @property
    def is_answer(self) -> bool:
        """A final record that answers its message (not a partial, not a cancellation)."""
        return self.final and not self.cancelled


class MemoryEvent(Record):
    """memory-events: what the memory stage did with a scene or an answer."""

    kind: ClassVar[str] = "memory_event"
    message_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    scene_id: str = Field(min_length=1)
    tenant: str = "default"
    event: Literal["stored", "recalled", "linked"]
    details: dict = Field(default_factory=dict)
    ts_ms: int = Field(default_factory=now_ms)


class Cancel(Record):
    """control: stop generating the answer of ``message_id`` (a client went away, a user pressed Ctrl-C). The
    decoder that holds the message aborts it and sends a final lora-output marked ``cancelled``; one that
    gets the message later finishes it as cancelled at once."""

    kind: ClassVar[str] = "cancel"
    message_id: str = Field(min_length=1)
    tenant: str = "default"
    reason: str = "cancelled"
    ts_ms: int = Field(default_factory=now_ms)


class RegisterChange(Record):
    """registers (compacted, keyed by register name): the catalogue changed while the stack runs. ``file`` is the
    register's file (absolute; every worker of a stack reads the same folders), ``adapter`` the folder of the
    weights it publishes and ``adapter_version`` their content hash (``name@hash``): a worker that finds other
    weights there refuses the change rather than serve them under that version. ``removed``: the register is
    gone; decoders unload its adapter and scenes stop routing to it."""

    kind: ClassVar[str] = "register_change"
    name: str = Field(min_length=1, max_length=64)
    removed: bool = False
    file: Optional[str] = None
    adapter: Optional[str] = None
    adapter_version: Optional[str] = None
    ts_ms: int = Field(default_factory=now_ms)

    @model_validator(mode="after")
    def _a_change_names_its_file(self) -> RegisterChange:
        if not self.removed and not self.file:
            raise ValueError("a register that is not removed needs its file")
        return self


class DecoderStatus(Record):
    """decoder-status (compacted, keyed by worker): the adapters one decoder worker serves now, by register,
    each with its version; sent when the worker starts and after every register change it takes."""

    kind: ClassVar[str] = "decoder_status"
    worker: str = Field(min_length=1, max_length=256)
    engine: str
    adapters: dict[str, str] = Field(default_factory=dict)  # register → adapter version ("" where not known)
    ts_ms: int = Field(default_factory=now_ms)


class WorkerStatus(Record):
    """worker-status (keyed by worker): a worker's heartbeat, sent every ``SCENESTREAM_STATUS_INTERVAL_S``: the
    stages it runs, the partitions of each stage's source topic its consumer holds now, and its decoder
    engine (None: no decoder here, or its engine failed). ``stopping``: the worker's last word as it stops. A
    gateway whose stages run elsewhere reads these for ``/readyz``: every partition of every stage's source
    held by a worker heard from lately, and a decoder engine up."""

    kind: ClassVar[str] = "worker_status"
    worker: str = Field(min_length=1, max_length=256)
    stages: list[str] = Field(default_factory=list)
    assigned: dict[str, list[int]] = Field(default_factory=dict)  # source topic (full name) → partitions held
    engine: Optional[str] = None
    interval_s: float = Field(gt=0)
    stopping: bool = False
    ts_ms: int = Field(default_factory=now_ms)


class DeadLetter(Record):
    """``<topic>.dlq``: what a stage could not handle, with the original bytes.

    Version 2: a dead letter that would itself be over the producer's size limit
    is sent truncated (``truncated``; ``value`` holds the first KiB, ``value_size``
    and ``value_sha256`` describe the whole original value).
    """

    kind: ClassVar[str] = "dead_letter"
    version: ClassVar[int] = 2
    topic: str
    partition: int
    offset: int
    key: Optional[bytes] = None
    value: Optional[bytes] = None
    stage: str
    reason: str
    error_type: str
    message_id: Optional[str] = None
    ts_ms: int = Field(default_factory=now_ms)
    truncated: bool = False
    value_size: Optional[int] = None
    value_sha256: Optional[str] = None
