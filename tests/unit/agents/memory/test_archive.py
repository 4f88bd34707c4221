"""The scene archive, on both backends (Qdrant Edge; qdrant-client in local mode)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np
import pytest

from scenestream.agents.memory.archive import (
    ClientArchive,
    EdgeArchive,
    Recalled,
    SceneArchive,
    open_archive,
    point_id,
)
from scenestream.schemas.records import Hypertoken, RegisterWeight, Scene, SceneField

DIM = 384


def make_scene(
    scene_id: str, session_id: str = "s1", tenant: str = "default", ts_ms: int = 1_000, text: str = "сцена"
) -> Scene:
    return Scene(
        scene_id=scene_id,
        message_id=f"m-{scene_id}",
        session_id=session_id,
        tenant=tenant,
        text=text,
        lang="ru",
        hypertokens=[Hypertoken(text="сцена", weight=1.0)],
        linkage="none",
        delta_code="Δ0",
        field=SceneField(valence=0.0, arousal=0.3, tension=0.1, rhythm="measured"),
        registers=[RegisterWeight(name="poet", weight=1.0)],
        register="poet",
        ts_ms=ts_ms,
    )


def unit_rows(n: int, seed: int = 7) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def near(vector: np.ndarray, seed: int = 11, noise: float = 0.01) -> np.ndarray:
    """A query close to ``vector``."""
    q = vector + noise * np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return q / np.linalg.norm(q)


@pytest.fixture(params=["edge", "client"])
def archive(request, tmp_path):
    if request.param == "edge":
        arc = EdgeArchive(tmp_path / "edge")
    else:
        arc = ClientArchive(str(tmp_path / "client"))
    yield arc
    arc.close()


def test_backends_satisfy_the_protocol(archive):
    assert isinstance(archive, (EdgeArchive, ClientArchive))
    typed: SceneArchive = archive  # noqa: F841 (structural typing)


def test_store_and_recall_finds_the_nearest(archive):
    scenes = [make_scene(f"sc{i}", ts_ms=1_000 + i) for i in range(20)]
    vectors = unit_rows(20)
    archive.store(scenes, vectors)
    assert archive.count() == 20

    hits = archive.recall(near(vectors[13]), session_id="s1", tenant="default", limit=3)
    assert isinstance(hits[0], Recalled)
    assert hits[0].scene_id == "sc13"
    assert hits[0].score > 0.9
    assert len(hits) <= 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    payload = hits[0].payload
    assert payload["text"] == "сцена" and payload["message_id"] == "m-sc13"
    assert payload["field"]["rhythm"] == "measured"
    assert Scene.model_validate(payload) == scenes[13]


def test_min_score_and_limit(archive):
    vectors = unit_rows(10)
    archive.store([make_scene(f"sc{i}") for i in range(10)], vectors)
    hits = archive.recall(vectors[4], session_id="s1", tenant="default", limit=10, min_score=0.99)
    assert [h.scene_id for h in hits] == ["sc4"]
    assert archive.recall(vectors[4], session_id="s1", tenant="default", limit=0) == []


def test_unnormalized_query_is_normalized_and_bad_shapes_are_refused(archive):
    vectors = unit_rows(5)
    archive.store([make_scene(f"sc{i}") for i in range(5)], vectors * 3.0)  # normalized on the way in
    hits = archive.recall(vectors[2] * 10.0, session_id="s1", tenant="default", limit=1)
    assert hits[0].scene_id == "sc2" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="dimension"):
        archive.recall(np.ones(DIM - 1, dtype=np.float32), session_id="s1", tenant="default", limit=1)
    with pytest.raises(ValueError, match="dimension"):
        archive.store([make_scene("bad")], np.ones((1, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="vectors for"):
        archive.store([make_scene("a"), make_scene("b")], unit_rows(3))
    with pytest.raises(ValueError, match="zero vector"):
        archive.store([make_scene("z")], np.zeros((1, DIM), dtype=np.float32))


def test_deterministic_ids_restore_does_not_grow(archive):
    assert point_id("sc1") == point_id("sc1") != point_id("sc2")
    assert isinstance(point_id("sc1"), uuid.UUID)
    scenes = [make_scene(f"sc{i}") for i in range(6)]
    vectors = unit_rows(6)
    archive.store(scenes, vectors)
    archive.store(scenes, vectors)
    archive.store([make_scene("sc0", text="again")], vectors[:1])
    assert archive.count() == 6
    assert archive.get("sc0")["text"] == "again"
    archive.store([make_scene("dup", text="first"), make_scene("dup", text="last")], unit_rows(2, seed=3))
    assert archive.count() == 7
    assert archive.get("dup")["text"] == "last"


def test_session_isolation(archive):
    vectors = unit_rows(8)
    a = [make_scene(f"a{i}", session_id="A") for i in range(4)]
    b = [make_scene(f"b{i}", session_id="B") for i in range(4)]
    archive.store(a + b, vectors)
    for i in range(4):  # query exactly on a scene of A, asked for session B
        hits = archive.recall(vectors[i], session_id="B", tenant="default", limit=8)
        assert hits and all(h.payload["session_id"] == "B" for h in hits)
        assert all(h.scene_id.startswith("b") for h in hits)
    hits = archive.recall(vectors[0], session_id="A", tenant="default", limit=8)
    assert {h.scene_id for h in hits} <= {"a0", "a1", "a2", "a3"}
    assert hits[0].scene_id == "a0"


def test_tenant_isolation(archive):
    vectors = unit_rows(6)
    acme = [make_scene(f"x{i}", session_id="shared", tenant="acme") for i in range(3)]
    other = [make_scene(f"y{i}", session_id="shared", tenant="other") for i in range(3)]
    archive.store(acme + other, vectors)
    for scope in ("session", "tenant"):
        for i in range(3):
            hits = archive.recall(vectors[i], session_id="shared", tenant="other", limit=6, scope=scope)
            assert hits and all(h.payload["tenant"] == "other" for h in hits)
    # scope="tenant" crosses sessions of the same tenant, and only of it
    archive.store([make_scene("x9", session_id="elsewhere", tenant="acme")], vectors[:1] * -1 + 0.001)
    archive.store([make_scene("x8", session_id="elsewhere", tenant="acme")], near(vectors[0])[None, :])
    hits = archive.recall(vectors[0], session_id="shared", tenant="acme", limit=10, scope="tenant")
    assert {h.scene_id for h in hits} >= {"x0", "x8"}
    assert all(h.payload["tenant"] == "acme" for h in hits)
    hits = archive.recall(vectors[0], session_id="shared", tenant="acme", limit=10, scope="session")
    assert "x8" not in {h.scene_id for h in hits}
    with pytest.raises(ValueError):
        archive.recall(vectors[0], session_id="shared", tenant="acme", limit=1, scope="everyone")


def test_exclude_scene_id(archive):
    vectors = unit_rows(5)
    archive.store([make_scene(f"sc{i}") for i in range(5)], vectors)
    hits = archive.recall(vectors[1], session_id="s1", tenant="default", limit=5, exclude_scene_id="sc1")
    assert "sc1" not in {h.scene_id for h in hits}
    assert len(hits) >= 1
    hits = archive.recall(vectors[1], session_id="s1", tenant="default", limit=1, exclude_scene_id="missing")
    assert hits[0].scene_id == "sc1"


def test_extra_and_update_payload_merge(archive):
    vectors = unit_rows(2)
    archive.store(
        [make_scene("sc0"), make_scene("sc1")],
        vectors,
        extra=[{"embedder": "e5", "tenant": "hijack"}, {}],
    )
    p0 = archive.get("sc0")
    assert p0["embedder"] == "e5"
    assert p0["tenant"] == "default"  # the indexed fields come from the scene
    archive.update_payload("sc0", {"answer": {"message_id": "m-ans", "register": "poet"}, "answered": True})
    p0 = archive.get("sc0")
    assert p0["answer"] == {"message_id": "m-ans", "register": "poet"}
    assert p0["answered"] is True and p0["embedder"] == "e5" and p0["text"] == "сцена"
    archive.update_payload("sc0", {"answered": False})
    assert archive.get("sc0")["answered"] is False
    assert archive.get("sc1").get("answered") is None
    assert archive.get("nope") is None
    with pytest.raises(KeyError):
        archive.update_payload("nope", {"answered": True})
    with pytest.raises(ValueError, match="identity"):
        archive.update_payload("sc0", {"tenant": "other"})
    # recall returns the merged payload too
    hits = archive.recall(vectors[0], session_id="s1", tenant="default", limit=1)
    assert hits[0].payload["answered"] is False


def test_history_is_ordered_and_since_ms_filters(archive):
    n = 300  # more than one scroll page
    ts = np.random.default_rng(5).permutation(n) // 2 * 10  # pairs share a ts_ms: scene_id breaks ties
    scenes = [make_scene(f"h{i:03d}", session_id="hist", ts_ms=int(ts[i])) for i in range(n)]
    scenes += [make_scene("other0", session_id="other", ts_ms=5)]
    scenes += [make_scene("elsewhere", session_id="hist", tenant="acme", ts_ms=7)]
    archive.store(scenes, unit_rows(len(scenes)))

    all_hist = archive.history("hist")
    assert len(all_hist) == n + 1
    keys = [(p["ts_ms"], p["scene_id"]) for p in all_hist]
    assert keys == sorted(keys)

    mine = archive.history("hist", tenant="default")
    assert len(mine) == n and all(p["tenant"] == "default" for p in mine)

    recent = archive.history("hist", tenant="default", since_ms=1000)
    assert recent and all(p["ts_ms"] >= 1000 for p in recent)
    assert len(recent) == sum(1 for s in scenes[:n] if s.ts_ms >= 1000)
    assert [p["scene_id"] for p in recent] == [p["scene_id"] for p in mine if p["ts_ms"] >= 1000]
    assert archive.history("nobody") == []


def test_erase_session_deletes_its_scenes_and_the_echoes_of_them_only_in_its_tenant(archive):
    mine = [make_scene(f"e{i}", session_id="gone", ts_ms=1_000 + i) for i in range(3)]
    other_session = make_scene("keep", session_id="stays", ts_ms=2_000).model_copy(
        update={"echoes": [{"scene_id": "e0", "text": "сцена"}, {"scene_id": "older", "text": "x"}]}
    )
    other_tenant = make_scene("t-e0", session_id="gone", tenant="acme")  # the same session name, another tenant
    archive.store(mine + [other_session, other_tenant], unit_rows(5))
    archive.update_payload("e1", {"answer": "ответ"})

    assert archive.erase_session("gone", "default") == {"scenes": 3, "answers": 1, "echo_links": 1}
    assert archive.history("gone", tenant="default") == []
    assert [p["scene_id"] for p in archive.history("gone", tenant="acme")] == ["t-e0"]
    assert archive.get("keep")["echoes"] == [{"scene_id": "older", "text": "x"}]
    assert archive.count() == 2
    assert archive.erase_session("gone", "default") == {"scenes": 0, "answers": 0, "echo_links": 0}
    with pytest.raises(ValueError):
        archive.erase_session("", "default")


def test_closed_archive_refuses(archive):
    archive.close()
    archive.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        archive.count()


def test_edge_archive_survives_close_and_reopen(tmp_path):
    path = tmp_path / "arc"
    vectors = unit_rows(12)
    arc = EdgeArchive(path)
    arc.store([make_scene(f"sc{i}", ts_ms=i) for i in range(12)], vectors)
    arc.update_payload("sc3", {"answer": "linked"})
    arc.close()

    with EdgeArchive(path) as again:
        assert again.count() == 12
        assert again.get("sc3")["answer"] == "linked"
        hits = again.recall(vectors[7], session_id="s1", tenant="default", limit=1)
        assert hits[0].scene_id == "sc7"
        assert [p["scene_id"] for p in again.history("s1")] == [f"sc{i}" for i in range(12)]
        again.store([make_scene("sc0")], vectors[:1])  # still deterministic after reopen
        assert again.count() == 12

    with pytest.raises(ValueError, match="cannot open"):
        EdgeArchive(path, dim=8)


CRASH = """
import os, sys
import numpy as np
from scenestream.agents.memory.archive import EdgeArchive
from scenestream.schemas.records import RegisterWeight, Scene, SceneField

arc = EdgeArchive(sys.argv[1])
scene = Scene(
    scene_id="crash0", message_id="m0", session_id="s1", text="t", lang="en", hypertokens=[],
    linkage="none", delta_code="d", field=SceneField(valence=0.0, arousal=0.3, tension=0.1, rhythm="measured"),
    registers=[RegisterWeight(name="poet", weight=1.0)], register="poet", ts_ms=1,
)
arc.store([scene], np.ones((1, 384), dtype=np.float32))
os._exit(0)  # no close, no flush: the engine's write-ahead log must hold the point
"""


def test_edge_archive_recovers_after_a_crash(tmp_path):
    path = tmp_path / "arc"
    done = subprocess.run([sys.executable, "-c", CRASH, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with EdgeArchive(path) as again:
        assert again.count() == 1
        assert again.get("crash0")["session_id"] == "s1"


def test_client_archive_reopens_local_mode(tmp_path):
    path = str(tmp_path / "client")
    vectors = unit_rows(4)
    with ClientArchive(path, collection="c1") as arc:
        arc.store([make_scene(f"sc{i}") for i in range(4)], vectors)
    with ClientArchive(path, collection="c1") as again:
        assert again.count() == 4
        assert again.recall(vectors[2], session_id="s1", tenant="default", limit=1)[0].scene_id == "sc2"
    with pytest.raises(ValueError, match="size"):
        ClientArchive(path, collection="c1", dim=8)


def test_open_archive_picks_the_backend(tmp_path):
    with open_archive(tmp_path, None) as arc:
        assert isinstance(arc, EdgeArchive)
        assert arc.path == tmp_path / "archive"
    assert (tmp_path / "archive" / "edge_config.json").exists()


def test_a_second_process_on_the_embedded_archive_gets_one_clear_error(tmp_path):
    import subprocess
    import sys

    from scenestream.agents.memory.archive import EdgeArchive

    code = (
        "import sys\n"
        "from scenestream.agents.memory.archive import ArchiveBusy, EdgeArchive\n"
        f"try:\n    EdgeArchive({str(tmp_path / 'arc')!r})\n"
        "except ArchiveBusy as exc:\n    print(exc); sys.exit(3)\n"
    )
    with EdgeArchive(tmp_path / "arc"):
        busy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert busy.returncode == 3, busy.stderr
    assert "SCENESTREAM_QDRANT_URL" in busy.stdout and "Traceback" not in busy.stderr
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert free.returncode == 0, free.stdout + free.stderr  # closed: the next process opens it
