"""One frozen settings object for every stage and command.

Every value is read from the environment here and nowhere else, with the
prefix ``SCENESTREAM_`` (``SCENESTREAM_BROKER``, ``SCENESTREAM_PARTITIONS`` ...).
``scenestream settings`` prints them all with their current values and docs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "scenestream"


class Settings(BaseSettings):
    """scenestream settings (environment prefix ``SCENESTREAM_``)."""

    model_config = SettingsConfigDict(env_prefix="SCENESTREAM_", frozen=True, extra="ignore")

    # --- broker -----------------------------------------------------------
    broker: Optional[str] = Field(
        None,
        description="Kafka bootstrap servers as kafka://host:port[,host:port]. "
        "Unset: scenestream starts its embedded Tansu broker on a free loopback port.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol, passed to every client."
    )
    sasl_mechanism: Optional[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]] = Field(
        None, description="SASL mechanism when security_protocol is SASL_*."
    )
    sasl_username: Optional[str] = Field(None, description="SASL user name.")
    sasl_password: Optional[str] = Field(None, description="SASL password.")
    ssl_cafile: Optional[Path] = Field(None, description="CA bundle for SSL / SASL_SSL.")
    ssl_certfile: Optional[Path] = Field(None, description="Client certificate for SSL.")
    ssl_keyfile: Optional[Path] = Field(None, description="Client key for SSL.")

    broker_storage: Literal["memory", "disk"] = Field(
        "memory",
        description="Where the embedded broker keeps messages: memory (lost when it stops or crashes) or disk "
        "(Tansu's s3 storage over s3rver, files under SCENESTREAM_DATA_DIR/broker: acknowledged messages survive "
        "a crash). A real Kafka cluster (SCENESTREAM_BROKER) is durable by replication.",
    )

    # --- topology ---------------------------------------------------------
    app_id: str = Field("scenestream", description="Consumer-group id prefix of the workers.")
    topic_prefix: str = Field("", description="Prefix for every topic name (isolates tenants, test runs, replays).")
    partitions: int = Field(4, ge=1, description="Partitions of each pipeline topic at creation.")
    replication_factor: int = Field(1, ge=1, description="Replication factor at topic creation.")
    retention_hours: int = Field(
        168, ge=1, description="Retention of the stream topics (the archive is the long memory)."
    )

    # --- backbone tuning --------------------------------------------------
    fetch_max_wait_ms: int = Field(
        10,
        ge=0,
        description="How long a fetch may wait for data. Tansu holds a fetch that covers an "
        "idle partition for this long, so it bounds hop latency (README, Benchmarks: transport).",
    )
    batch_max: int = Field(256, ge=1, description="Most messages a stage handles in one batch.")
    max_request_bytes: int = Field(
        1024 * 1024,
        ge=256,
        description="Largest record a producer sends (aiokafka's max_request_size; keep it "
        "within the broker's message.max.bytes). A stage's result over it sends the input to the dead-letter "
        "topic, truncated there when the whole dead letter would be over it too.",
    )
    producer_linger_ms: int = Field(1, ge=0, description="Producer linger (batching) time.")
    producer_acks: Literal["all", "1", "0"] = Field(
        "all",
        description="Broker acknowledgements a send waits for: all (every in-sync replica; a confirmed result "
        "survives a broker's loss), 1 (the leader only), 0 (none).",
    )
    producer_idempotence: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Idempotent producer (no duplicates from the producer's own retries; needs acks=all). auto: on, "
        "except for a broker on a loopback address: the embedded Tansu answers InitProducerId with an unknown error "
        "(measured), and the worker says so at start.",
    )
    dedup_window: int = Field(
        10_000,
        ge=0,
        description="Message ids a stage remembers per input partition as answered (read back from its "
        "output topic after a restart or rebalance), so an input that comes again is not answered twice; 0: off.",
    )
    batch_max_s: float = Field(
        2.0,
        gt=0,
        description="Longest a stage should work on one batch: batches shrink to what the stage handles "
        "in this time (measured), so a killed worker loses at most this much work.",
    )
    shutdown_timeout_s: float = Field(
        8.0,
        gt=0,
        description="A worker asked to stop (SIGTERM, Ctrl-C) exits within this time even when its broker "
        "is gone; nothing unfinished is committed.",
    )
    status_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often each worker sends its heartbeat (stages, partitions held, engine) to worker-status; "
        "a gateway counts a worker gone after three intervals without one.",
    )
    commit_interval_s: float = Field(0.5, gt=0, description="Offset commit interval.")
    session_timeout_s: float = Field(
        6.0,
        gt=0,
        description="Consumer-group session timeout (6 s is the least Kafka allows by default; "
        "Tansu holds a join for about half of it, so it bounds how fast a worker starts).",
    )
    worker_name: Optional[str] = Field(
        None,
        description="A stable name for this worker (static group membership): restarted under the same name "
        "within the session timeout, it takes its partitions back without a rebalance, so the other workers never "
        "pause. Unique per running worker. Unset: a new member at every start.",
    )
    rebalance_timeout_s: float = Field(3.0, gt=0, description="How long a rebalance waits for members to rejoin.")

    # --- data -------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where scenestream keeps its state: broker address, archive, models.",
    )
    models_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "scenestream" / "models",
        description="Where `scenestream setup` keeps the prepared base model (a cache, shared by data dirs).",
    )
    max_text_bytes: int = Field(
        16 * 1024, ge=1, description="Longest raw text accepted (UTF-8 bytes); longer goes to the DLQ."
    )
    tokenizer_model: Optional[Path] = Field(
        None, description="SentencePiece model file. Unset: the model shipped with scenestream."
    )
    hypertokens_max: int = Field(12, ge=1, description="Most hypertokens kept per text.")
    scene_embedder: Literal["e5", "static"] = Field(
        "e5",
        description="Sentence embeddings of the scene builder: e5 (multilingual-e5-small, accurate) or "
        "static (per-piece e5 table, much faster, less accurate; see `scenestream bench scene`).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "WARNING", description="Log level of the workers (any case: info is INFO)."
    )

    # --- decoder ----------------------------------------------------------
    engine: Optional[Literal["vllm", "openai", "transformers"]] = Field(
        None, description="Decoder engine. Unset: vllm when installed, else transformers."
    )
    base_model: Optional[str] = Field(
        None, description="A local Hugging Face causal-LM folder. Unset: Gemma 3 270M from `scenestream setup`."
    )
    adapters_dir: Optional[Path] = Field(
        None,
        description="Folder with one LoRA adapter folder per register. Unset: each register's own adapter "
        "folder (its file in the register catalogue says where).",
    )
    voice_command: Optional[str] = Field(
        None,
        description="A local speech synthesizer of your own, run instead of espeak-ng for the answer's voice: a "
        "command line that reads the text on stdin and writes a WAV to stdout, with the placeholders {lang} (ru "
        "or en), {speed} (words a minute), {length_scale} (160 / speed: above 1 slower), {pitch} (0..99) and "
        "{gap} filled from the scene's field, e.g. 'piper --model /voices/{lang}.onnx --length_scale "
        "{length_scale} --output_file -'. Unset: espeak-ng.",
    )
    registers_path: Optional[str] = Field(
        None,
        description="Folders of your own register files (one NAME.toml per register, the format of "
        "registers/poet.toml), separated by ':'; read after the shipped registers/ folder, a file there "
        "replaces a shipped register of the same name.",
    )
    openai_base_url: Optional[str] = Field(
        None, description="OpenAI-compatible server for SCENESTREAM_ENGINE=openai, e.g. http://vllm:8000/v1."
    )
    openai_api_key: str = Field("EMPTY", description="API key for the OpenAI-compatible server.")
    max_lora_rank: int = Field(8, ge=1, description="Largest LoRA rank vLLM makes room for (the shipped adapters: 8).")
    vllm_memory_fraction: float = Field(
        0.25, gt=0, le=1, description="Share of memory vLLM reserves for its KV cache (CPU: of RAM)."
    )
    vllm_tcmalloc: bool = Field(
        True, description="Preload tcmalloc into vLLM's CPU engine core when the machine has it (about 2x faster)."
    )
    vllm_cpu_ops: bool = Field(
        True,
        description="vLLM on CPU: scenestream's LoRA products (no per-token copies of the adapters' weights) "
        "and repetition penalty (only the seen tokens' logits) in vLLM's engine core "
        "(agents/decoder/vllm_cpu_ops.py; `scenestream bench decoder` compares).",
    )
    lora_kernel: Literal["stacked", "bgmv", "peft"] = Field(
        "stacked",
        description="How the transformers engine mixes adapters in one batch: stacked (every adapter's LoRA "
        "stacked, one slot per row, static shapes that compile), bgmv (the same with a per-row gather of the "
        "weights, for comparison) or peft (PEFT's adapter_names: a loop over the adapters in every layer).",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Static KV cache and a torch.compile'd decoding step (CUDA graphs) in the transformers "
        "engine: auto = on with CUDA, off on CPU; on forces it (CPU too); never with SCENESTREAM_LORA_KERNEL=peft.",
    )
    max_new_tokens: int = Field(
        80, ge=1, le=512, description="Longest answer in tokens (a message's own params may ask for another length)."
    )
    answer_min_tokens: int = Field(
        32,
        ge=0,
        description="An answer stops at its first sentence end once it has about this many tokens, so it ends "
        "finished instead of at the token limit (0: only at the model's own end or the limit). An answer that "
        "reaches the limit first is trimmed to its last complete sentence.",
    )
    decoder_mode: Literal["continuous", "batch"] = Field(
        "continuous",
        description="continuous: the engine keeps running and admits each scene at its next step while earlier "
        "answers are still generated; each answer is sent and acknowledged when it is done. batch: the scenes "
        "waiting are generated together and nothing new is admitted until the whole batch is done (the earlier "
        "decoder, kept for comparison: `scenestream bench e2e`).",
    )
    decoder_max_inflight: int = Field(
        64,
        ge=1,
        description="continuous mode: most answers generated at once; beyond it the decoder stops fetching scenes "
        "(its partitions pause) until one finishes. 64: vLLM on 2 CPU cores reaches the whole-batch throughput "
        "only there (`scenestream bench inflight`); at lower rates fewer are in flight anyway.",
    )
    stream: bool = Field(
        True, description="Stream answers: partial lora-outputs (final=false) while tokens come, then the whole one."
    )
    stream_interval_ms: float = Field(
        50.0, ge=0, description="Least time between two partial lora-outputs of one answer (the first goes at once)."
    )
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature (0: greedy, reproducible).")
    repetition_penalty: float = Field(
        1.3, ge=1.0, description="Penalty on tokens already generated (a 270M model loops without it)."
    )
    memory: bool = Field(
        True, description="Memory stage on: the decoder answers resonated scenes (off: formed ones, directly)."
    )
    memory_scope: Literal["session", "tenant"] = Field(
        "session", description="Recall past scenes of the same session, or of the whole tenant (never across tenants)."
    )
    qdrant_url: Optional[str] = Field(
        None, description="Qdrant server for the memory stage. Unset: the embedded Qdrant Edge on disk."
    )

    # --- API (scenestream serve) --------------------------------------------
    api_keys: Optional[str] = Field(
        None,
        description="API keys of `scenestream serve`: a file of `key tenant` lines, or inline `key=tenant,...`. "
        "Set: every /v1 route needs `Authorization: Bearer <key>` and stays inside the key's tenant. Unset: no "
        "keys, tenant `default`, and serve binds only a loopback address unless --insecure.",
    )
    api_max_pending: int = Field(
        64, ge=1, description="Most requests a serve process waits on at once; beyond it 429 with Retry-After."
    )
    api_timeout_s: float = Field(
        120.0, gt=0, description="Longest a request waits for its answer before 504 (in a stream: an error event)."
    )
    api_retry_after_s: int = Field(1, ge=1, description="The Retry-After seconds of a 429 (too many pending).")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: Optional[str]) -> Optional[str]:
        if value is None or value == "":
            return None
        if not value.startswith("kafka://"):
            raise ValueError(f"SCENESTREAM_BROKER must look like kafka://host:port[,host:port], got {value!r}")
        hosts = value[len("kafka://") :].split(",")
        for host in hosts:
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"SCENESTREAM_BROKER entry {host!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _check_idempotence(self) -> Settings:
        if self.producer_idempotence == "on" and self.producer_acks != "all":
            raise ValueError(
                "SCENESTREAM_PRODUCER_IDEMPOTENCE=on needs SCENESTREAM_PRODUCER_ACKS=all "
                "(or set SCENESTREAM_PRODUCER_IDEMPOTENCE=off)"
            )
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        """The broker list as aiokafka wants it (needs ``broker`` set)."""
        if self.broker is None:
            raise RuntimeError("no broker address: start the embedded broker first")
        return self.broker[len("kafka://") :].split(",")

    @property
    def idempotent_producer(self) -> bool:
        """Whether producers are idempotent (``producer_idempotence``, with ``auto`` decided by the broker)."""
        if self.producer_idempotence != "auto":
            return self.producer_idempotence == "on"
        if self.producer_acks != "all" or self.broker is None:
            return False
        hosts = [h.rpartition(":")[0].strip("[]") for h in self.bootstrap_servers]
        return not all(h in ("127.0.0.1", "localhost", "::1") for h in hosts)

    def kafka_auth(self) -> dict:
        """SASL/SSL keyword arguments shared by every aiokafka client."""
        kwargs: dict = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, current value, description) for every setting."""
    current = get_settings()
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(current, name)
        shown = "***" if name == "sasl_password" and value else ("" if value is None else str(value))
        rows.append((f"SCENESTREAM_{name.upper()}", shown, field.description or ""))
    return rows
