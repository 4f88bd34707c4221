"""The scene archive: every scene with its embedding, recalled by similarity.

A scene is stored as one point: its vector (384-d, L2-normalized, from
multilingual-e5-small) and a payload holding the scene's JSON dump
(``scene.model_dump(mode="json")``, so ``Scene.model_validate(payload)``
rebuilds it) with the indexed fields flat at the top level (``scene_id``,
``message_id``, ``session_id``, ``tenant``, ``ts_ms``, ``register``,
``delta_code``) and any ``extra`` fields merged in.

Recall always filters on the tenant and, with ``scope="session"`` (the
default), on the session too: a scene is never recalled across tenants.

Point ids are ``uuid5(SCENE_NAMESPACE, scene_id)``, so storing a scene again
(reprocessing after a crash) overwrites it instead of adding a duplicate.

Two backends, one protocol:

* :class:`EdgeArchive`: Qdrant Edge (PyPI ``qdrant-edge-py``, module
  ``qdrant_edge``), the Qdrant engine in process, persisted in a directory.
* :class:`ClientArchive`: ``qdrant-client``, against a Qdrant server (an
  ``http(s)://`` URL) or its local mode (a directory path).

:func:`open_archive` picks one from the settings. The engines are imported
lazily, when an archive is opened.
"""

from __future__ import annotations

import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from scenestream.schemas.records import Scene

DIM = 384
SCENE_NAMESPACE = uuid.UUID("3b5e9f1c-7a42-5d8e-9c61-0f2a4b7d8e35")
"""Fixed namespace of the point ids; changing it orphans every stored scene."""

FLAT_FIELDS = ("scene_id", "message_id", "session_id", "tenant", "ts_ms", "register", "delta_code")
"""Payload fields always taken from the scene itself (``extra`` cannot override them)."""

INDEXED_FIELDS: dict[str, Literal["keyword", "integer"]] = {
    "session_id": "keyword",
    "tenant": "keyword",
    "ts_ms": "integer",
    "register": "keyword",
    "delta_code": "keyword",
}
"""Payload indexes created on a new archive (field -> schema)."""

PROTECTED_FIELDS = frozenset({"scene_id", "message_id", "session_id", "tenant"})
"""Identity fields that :meth:`SceneArchive.update_payload` refuses to change."""

SCROLL_PAGE = 256

Scope = Literal["session", "tenant"]


@dataclass(frozen=True)
class Recalled:
    """One recalled scene: its id, the cosine similarity and the stored payload."""

    scene_id: str
    score: float
    payload: dict


class SceneArchive(Protocol):
    def store(self, scenes: Sequence[Scene], vectors: np.ndarray, extra: Sequence[dict] | None = None) -> None:
        """Upsert the scenes with their vectors (one row each); ``extra[i]`` merges into payload i."""

    def recall(
        self,
        vector: np.ndarray,
        session_id: str,
        tenant: str,
        limit: int,
        scope: Scope = "session",
        exclude_scene_id: str | None = None,
        min_score: float = 0.0,
    ) -> list[Recalled]:
        """The nearest stored scenes of the tenant (and of the session when scope is "session"), best first."""

    def get(self, scene_id: str) -> dict | None:
        """The payload of a scene, or None if it is not stored."""

    def by_message(self, message_id: str) -> dict | None:
        """The payload of the scene of ``message_id``, or None if it is not stored."""

    def update_payload(self, scene_id: str, fields: dict) -> None:
        """Merge ``fields`` into a stored scene's payload (KeyError when it is not stored)."""

    def history(self, session_id: str, tenant: str | None = None, since_ms: int | None = None) -> list[dict]:
        """Payloads of a session (of a tenant, with ``ts_ms >= since_ms``), by ts_ms then scene_id."""

    def erase_session(self, session_id: str, tenant: str) -> dict[str, int]:
        """Delete a session's scenes (with their answers) and the echoes of them that the tenant's other scenes
        hold; the counts: ``scenes``, ``answers``, ``echo_links``."""

    def count(self) -> int:
        """How many scenes are stored."""

    def close(self) -> None:
        """Flush and release the archive (idempotent)."""


# ---------------------------------------------------------------------------
# helpers shared by the backends
# ---------------------------------------------------------------------------


def point_id(scene_id: str) -> uuid.UUID:
    """The deterministic point id of a scene."""
    if not isinstance(scene_id, str) or not scene_id:
        raise ValueError(f"scene_id must be a non-empty string, got {scene_id!r}")
    return uuid.uuid5(SCENE_NAMESPACE, scene_id)


def build_payload(scene: Scene, extra: dict | None = None) -> dict:
    """The stored payload: the scene's JSON dump, ``extra`` merged in, the flat fields on top."""
    payload: dict[str, Any] = scene.model_dump(mode="json")
    if extra:
        payload.update(extra)
    for name in FLAT_FIELDS:
        payload[name] = getattr(scene, name)
    return payload


def _normalize_rows(rows: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{what} contains NaN or infinite values")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if np.any(norms < 1e-12):
        raise ValueError(f"{what} contains a zero vector, which has no direction to compare")
    return (rows / norms).astype(np.float32)


def as_rows(vectors: np.ndarray, n: int, dim: int) -> np.ndarray:
    """``vectors`` as an (n, dim) float32 matrix of unit rows, or ValueError saying why not."""
    rows = np.asarray(vectors, dtype=np.float32)
    if rows.ndim == 1 and n == 1:
        rows = rows[None, :]
    if rows.ndim != 2:
        raise ValueError(f"vectors must be a 2-d array (one row per scene), got shape {rows.shape}")
    if rows.shape[0] != n:
        raise ValueError(f"got {rows.shape[0]} vectors for {n} scenes")
    if rows.shape[1] != dim:
        raise ValueError(f"vectors have dimension {rows.shape[1]}, the archive stores {dim}")
    return _normalize_rows(rows, "vectors")


def as_query(vector: np.ndarray, dim: int) -> np.ndarray:
    """A query vector as a (dim,) float32 unit vector, or ValueError saying why not."""
    q = np.asarray(vector, dtype=np.float32)
    if q.ndim == 2 and q.shape[0] == 1:
        q = q[0]
    if q.ndim != 1:
        raise ValueError(f"the query must be one vector, got shape {q.shape}")
    if q.shape[0] != dim:
        raise ValueError(f"the query has dimension {q.shape[0]}, the archive stores {dim}")
    return _normalize_rows(q[None, :], "the query")[0]


def history_order(payloads: Iterable[dict]) -> list[dict]:
    return sorted(payloads, key=lambda p: (int(p.get("ts_ms", 0)), str(p.get("scene_id", ""))))


def _require(value: str, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


class _BaseArchive:
    """Validation and bookkeeping shared by both backends; engines implement the ``_`` methods."""

    dim: int

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self._closed = False
        self._lock = threading.RLock()

    # -- engine hooks ------------------------------------------------------
    def _upsert(self, ids: list[uuid.UUID], rows: np.ndarray, payloads: list[dict]) -> None:
        raise NotImplementedError

    def _query(
        self,
        q: np.ndarray,
        must: list[tuple[str, str]],
        exclude: uuid.UUID | None,
        limit: int,
        min_score: float,
    ) -> list[tuple[float, dict]]:
        raise NotImplementedError

    def _retrieve(self, pid: uuid.UUID) -> dict | None:
        raise NotImplementedError

    def _set_payload(self, pid: uuid.UUID, fields: dict) -> None:
        raise NotImplementedError

    def _scroll(self, must: list[tuple[str, str]], since_ms: int | None) -> list[dict]:
        raise NotImplementedError

    def _count(self) -> int:
        raise NotImplementedError

    def _delete(self, ids: list[uuid.UUID]) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    # -- the protocol ------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    def store(self, scenes: Sequence[Scene], vectors: np.ndarray, extra: Sequence[dict] | None = None) -> None:
        scenes = list(scenes)
        if extra is not None and len(extra) != len(scenes):
            raise ValueError(f"got {len(extra)} extra dicts for {len(scenes)} scenes")
        if not scenes:
            return
        rows = as_rows(vectors, len(scenes), self.dim)
        # one point per scene id: the last occurrence in the batch wins, as it would across batches
        latest: dict[uuid.UUID, int] = {}
        for i, scene in enumerate(scenes):
            latest[point_id(scene.scene_id)] = i
        order = sorted(latest.values())
        ids = [point_id(scenes[i].scene_id) for i in order]
        payloads = [build_payload(scenes[i], extra[i] if extra is not None else None) for i in order]
        with self._lock:
            self._check_open()
            self._upsert(ids, rows[order], payloads)

    def recall(
        self,
        vector: np.ndarray,
        session_id: str,
        tenant: str,
        limit: int,
        scope: Scope = "session",
        exclude_scene_id: str | None = None,
        min_score: float = 0.0,
    ) -> list[Recalled]:
        if scope not in ("session", "tenant"):
            raise ValueError(f"scope must be 'session' or 'tenant', got {scope!r}")
        _require(tenant, "tenant")
        must = [("tenant", tenant)]
        if scope == "session":
            _require(session_id, "session_id")
            must.append(("session_id", session_id))
        q = as_query(vector, self.dim)
        if limit <= 0:
            return []
        exclude = point_id(exclude_scene_id) if exclude_scene_id else None
        with self._lock:
            self._check_open()
            hits = self._query(q, must, exclude, int(limit), float(min_score))
        return [Recalled(scene_id=str(p.get("scene_id", "")), score=float(s), payload=p) for s, p in hits]

    def get(self, scene_id: str) -> dict | None:
        pid = point_id(scene_id)
        with self._lock:
            self._check_open()
            return self._retrieve(pid)

    def update_payload(self, scene_id: str, fields: dict) -> None:
        touched = PROTECTED_FIELDS.intersection(fields)
        if touched:
            raise ValueError(f"update_payload cannot change the identity fields {sorted(touched)}")
        pid = point_id(scene_id)
        with self._lock:
            self._check_open()
            if self._retrieve(pid) is None:
                raise KeyError(f"scene {scene_id!r} is not in the archive")
            if fields:
                self._set_payload(pid, dict(fields))

    def by_message(self, message_id: str) -> dict | None:
        """The archived scene of ``message_id`` whatever the scene builder's version that made its id."""
        _require(message_id, "message_id")
        with self._lock:
            self._check_open()
            payloads = self._scroll([("message_id", message_id)], None)
        return payloads[0] if payloads else None

    def history(self, session_id: str, tenant: str | None = None, since_ms: int | None = None) -> list[dict]:
        _require(session_id, "session_id")
        must = [("session_id", session_id)]
        if tenant is not None:
            _require(tenant, "tenant")
            must.append(("tenant", tenant))
        with self._lock:
            self._check_open()
            payloads = self._scroll(must, None if since_ms is None else int(since_ms))
        return history_order(payloads)

    def erase_session(self, session_id: str, tenant: str) -> dict[str, int]:
        _require(session_id, "session_id")
        _require(tenant, "tenant")
        with self._lock:
            self._check_open()
            payloads = self._scroll([("session_id", session_id), ("tenant", tenant)], None)
            erased = {str(p.get("scene_id")) for p in payloads if p.get("scene_id")}
            answers = sum(1 for p in payloads if p.get("answer") is not None)
            links = 0
            if erased:
                # with SCENESTREAM_MEMORY_SCOPE=tenant another session's scene may carry these as echoes (their
                # texts and answers): those echoes go too
                for other in self._scroll([("tenant", tenant)], None):
                    if other.get("scene_id") in erased or not other.get("echoes"):
                        continue
                    kept = [e for e in other["echoes"] if e.get("scene_id") not in erased]
                    if len(kept) != len(other["echoes"]):
                        links += len(other["echoes"]) - len(kept)
                        self._set_payload(point_id(str(other["scene_id"])), {"echoes": kept})
                self._delete([point_id(scene_id) for scene_id in sorted(erased)])
        return {"scenes": len(erased), "answers": answers, "echo_links": links}

    def count(self) -> int:
        with self._lock:
            self._check_open()
            return int(self._count())

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Qdrant Edge (in process)
# ---------------------------------------------------------------------------


class EdgeArchive(_BaseArchive):
    """The archive in process: a Qdrant Edge shard in the directory ``path``.

    A new directory gets a shard with cosine distance and the payload indexes
    of :data:`INDEXED_FIELDS`; an existing one is loaded (its vector size must
    be ``dim``). Writes go through the shard's write-ahead log, so they
    survive a crash; :meth:`close` flushes.
    """

    def __init__(self, path: Path, dim: int = DIM) -> None:
        super().__init__(dim)
        import qdrant_edge as qe

        self._qe = qe
        self.path = Path(path)
        self._folder_lock = _exclusive(self.path)
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        if (self.path / "edge_config.json").exists():
            try:
                self._shard = qe.EdgeShard.load(str(self.path), config)
            except Exception as exc:  # the engine raises a bare Exception with the reason
                raise ValueError(f"cannot open the scene archive at {self.path}: {exc}") from exc
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self.path), config)
        self._ensure_indexes()

    def _ensure_indexes(self) -> None:
        qe = self._qe
        existing = set(self._shard.info().payload_schema)
        for name, kind in INDEXED_FIELDS.items():
            if name in existing:
                continue
            if name == "tenant":
                schema = qe.KeywordIndexParams(is_tenant=True)
            elif kind == "integer":
                schema = qe.IntegerIndexParams(lookup=True, range=True)
            else:
                schema = qe.PayloadSchemaType.Keyword
            self._shard.update(qe.UpdateOperation.create_field_index(name, schema))

    def _filter(self, must: list[tuple[str, str]], exclude: uuid.UUID | None = None, since_ms: int | None = None):
        qe = self._qe
        conditions: list[Any] = [qe.FieldCondition(key, match=qe.MatchValue(value)) for key, value in must]
        if since_ms is not None:
            conditions.append(qe.FieldCondition("ts_ms", range=qe.RangeFloat(gte=float(since_ms))))
        must_not = [qe.HasIdCondition({exclude})] if exclude is not None else None
        return qe.Filter(must=conditions, must_not=must_not)

    def _upsert(self, ids, rows, payloads) -> None:
        qe = self._qe
        points = [qe.Point(pid, row, payload) for pid, row, payload in zip(ids, rows, payloads)]
        self._shard.update(qe.UpdateOperation.upsert_points(points))

    def _query(self, q, must, exclude, limit, min_score):
        qe = self._qe
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(q.tolist()),
            filter=self._filter(must, exclude),
            with_payload=True,
            with_vector=False,
            score_threshold=min_score,
        )
        return [(hit.score, hit.payload or {}) for hit in self._shard.query(request)]

    def _retrieve(self, pid):
        records = self._shard.retrieve([pid], with_payload=True, with_vector=False)
        return (records[0].payload or {}) if records else None

    def _set_payload(self, pid, fields) -> None:
        self._shard.update(self._qe.UpdateOperation.set_payload([pid], fields))

    def _scroll(self, must, since_ms):
        qe = self._qe
        flt = self._filter(must, since_ms=since_ms)
        out: list[dict] = []
        offset = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, filter=flt, with_payload=True, with_vector=False)
            )
            out.extend(r.payload or {} for r in records)
            if offset is None or not records:
                return out

    def _count(self) -> int:
        return self._shard.count(self._qe.CountRequest(exact=True))

    def _delete(self, ids) -> None:
        self._shard.update(self._qe.UpdateOperation.delete_points(list(ids)))

    def optimize(self) -> bool:
        """Run the shard's segment optimizers now (merge segments, build the HNSW index)."""
        with self._lock:
            self._check_open()
            return bool(self._shard.optimize())

    def flush(self) -> None:
        with self._lock:
            self._check_open()
            self._shard.flush()

    def _close(self) -> None:
        try:
            self._shard.flush()
        finally:
            self._shard.close()
        if self._folder_lock is not None:
            self._folder_lock.close()  # closing the descriptor releases the lock
            self._folder_lock = None


class ArchiveBusy(ValueError):
    """The embedded archive is open in another process (Qdrant Edge is single-process)."""


def _exclusive(path: Path):
    """An exclusive lock on the archive folder, held while it is open: a second process gets one clear error
    instead of Qdrant Edge's WAL-lock traceback."""
    import fcntl

    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / "scenestream.lock", "a+")  # noqa: SIM115 - held open as the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ArchiveBusy(
            f"the embedded scene archive {path} is open in another process (a running stack or memory worker); "
            "Qdrant Edge is single-process: stop that process, or set SCENESTREAM_QDRANT_URL to a Qdrant server "
            "to run several memory workers"
        ) from None
    return handle


# ---------------------------------------------------------------------------
# qdrant-client (server, or local mode)
# ---------------------------------------------------------------------------


class ClientArchive(_BaseArchive):
    """The archive in a Qdrant collection through ``qdrant-client``.

    ``url_or_path`` starting with ``http://`` or ``https://`` is a server;
    anything else is a directory for the client's local mode (same API, pure
    Python, for tests and small deployments; payload indexes are recorded but
    have no effect there). The collection is created with cosine distance if
    missing; an existing one must have vectors of size ``dim``.
    """

    def __init__(self, url_or_path: str, collection: str = "scenes", dim: int = DIM) -> None:
        super().__init__(dim)
        from qdrant_client import QdrantClient, models

        self._m = models
        self.collection = collection
        self.remote = str(url_or_path).startswith(("http://", "https://"))
        if self.remote:
            self._client = QdrantClient(url=str(url_or_path))
        else:
            Path(url_or_path).mkdir(parents=True, exist_ok=True)
            # calls are serialized by self._lock, so the sqlite handle may move between threads
            self._client = QdrantClient(path=str(url_or_path), force_disable_check_same_thread=True)
        try:
            self._ensure_collection()
        except Exception:
            self._client.close()
            raise

    def _ensure_collection(self) -> None:
        m = self._m
        if not self._client.collection_exists(self.collection):
            self._client.create_collection(
                self.collection, vectors_config=m.VectorParams(size=self.dim, distance=m.Distance.COSINE)
            )
        info = self._client.get_collection(self.collection)
        params = info.config.params.vectors
        size = getattr(params, "size", None)
        if size is not None and size != self.dim:
            raise ValueError(f"collection {self.collection!r} stores vectors of size {size}, not {self.dim}")
        existing = set(info.payload_schema or {})
        with warnings.catch_warnings():
            # local mode warns that payload indexes have no effect there
            warnings.simplefilter("ignore", UserWarning)
            for name, kind in INDEXED_FIELDS.items():
                if name in existing:
                    continue
                if name == "tenant":
                    schema: Any = m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True)
                elif kind == "integer":
                    schema = m.IntegerIndexParams(type=m.IntegerIndexType.INTEGER, lookup=True, range=True)
                else:
                    schema = m.PayloadSchemaType.KEYWORD
                self._client.create_payload_index(self.collection, name, field_schema=schema, wait=True)

    def _filter(self, must, exclude: uuid.UUID | None = None, since_ms: int | None = None):
        m = self._m
        conditions: list[Any] = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in must]
        if since_ms is not None:
            conditions.append(m.FieldCondition(key="ts_ms", range=m.Range(gte=since_ms)))
        must_not = [m.HasIdCondition(has_id=[str(exclude)])] if exclude is not None else None
        return m.Filter(must=conditions, must_not=must_not)

    def _upsert(self, ids, rows, payloads) -> None:
        m = self._m
        points = [
            m.PointStruct(id=str(pid), vector=row.tolist(), payload=payload)
            for pid, row, payload in zip(ids, rows, payloads)
        ]
        self._client.upsert(self.collection, points=points, wait=True)

    def _query(self, q, must, exclude, limit, min_score):
        response = self._client.query_points(
            self.collection,
            query=q.tolist(),
            query_filter=self._filter(must, exclude),
            limit=limit,
            with_payload=True,
            with_vectors=False,
            score_threshold=min_score,
        )
        return [(hit.score, hit.payload or {}) for hit in response.points]

    def _retrieve(self, pid):
        records = self._client.retrieve(self.collection, ids=[str(pid)], with_payload=True, with_vectors=False)
        return (records[0].payload or {}) if records else None

    def _set_payload(self, pid, fields) -> None:
        self._client.set_payload(self.collection, payload=fields, points=[str(pid)], wait=True)

    def _scroll(self, must, since_ms):
        flt = self._filter(must, since_ms=since_ms)
        out: list[dict] = []
        offset = None
        while True:
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=flt,
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            out.extend(r.payload or {} for r in records)
            if offset is None or not records:
                return out

    def _count(self) -> int:
        return self._client.count(self.collection, exact=True).count

    def _delete(self, ids) -> None:
        self._client.delete(
            self.collection, points_selector=self._m.PointIdsList(points=[str(i) for i in ids]), wait=True
        )

    def _close(self) -> None:
        self._client.close()


def open_archive(data_dir: Path, qdrant_url: str | None, collection: str = "scenes") -> SceneArchive:
    """A Qdrant server's collection when ``qdrant_url`` is set, else the Edge archive in ``data_dir/archive``."""
    if qdrant_url:
        return ClientArchive(qdrant_url, collection=collection)
    return EdgeArchive(Path(data_dir) / "archive")
