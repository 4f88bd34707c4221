"""The memory hook on a real on-disk archive and real embeddings: resonance, isolation, links, replays."""

import pytest

from scenestream.agents.memory.archive import EdgeArchive
from scenestream.agents.memory.transform import Memory, resonance_of
from scenestream.agents.scene.embedder import E5Embedder
from scenestream.offline import scenes_for
from scenestream.schemas.records import LoraOutput, RawText
from scenestream.settings import Settings


@pytest.fixture
def memory(tmp_path):
    archive = EdgeArchive(tmp_path / "archive")
    yield Memory(archive, E5Embedder())
    archive.close()


_n = [0]


def scene(text, session="s1", tenant="t1", replay_of=None):
    _n[0] += 1
    return scenes_for(
        [RawText(message_id=f"m{_n[0]}", session_id=session, tenant=tenant, text=text, replay_of=replay_of)], Settings()
    )[0]


def test_resonance_formula():
    assert resonance_of([]) == 0.0
    assert resonance_of([0.5, 0.8]) == 0.0  # below the floor: unrelated
    one = resonance_of([0.95])
    assert 0 < one < resonance_of([0.95, 0.95]) < 1  # repetition raises it
    assert resonance_of([0.99]) > resonance_of([0.9])  # similarity raises it


def test_repeated_theme_resonates_unrelated_does_not(memory):
    ((first, events),) = memory.remember([scene("Почему я не чувствую шаг в себе?")])
    assert first.stage == "resonated" and first.resonance == 0.0 and first.echoes == []
    assert [e.event for e in events] == ["stored", "recalled"]
    ((unrelated, _),) = memory.remember([scene("Сколько будет 17 умножить на 23?")])
    assert unrelated.resonance == 0.0
    ((second, _),) = memory.remember([scene("Я не чувствую своих шагов, почему так?")])
    assert second.resonance > 0 and second.echoes[0]["scene_id"] == first.scene_id
    ((third, _),) = memory.remember([scene("Почему я совсем не ощущаю шаг внутри себя?")])
    assert third.resonance > second.resonance  # the theme repeats
    assert third.symbol is None or third.resonance >= memory.symbol_at


def test_never_recalled_across_sessions_or_tenants(memory):
    memory.remember([scene("Почему я не чувствую шаг в себе?", session="A")])
    ((other, _),) = memory.remember([scene("Почему я не чувствую шаг в себе?", session="B")])
    assert other.resonance == 0.0 and other.echoes == []
    memory.scope = "tenant"
    ((same_tenant, _),) = memory.remember([scene("Почему я не чувствую шаг в себе?", session="C")])
    assert same_tenant.echoes  # tenant scope sees sessions A and B
    ((other_tenant, _),) = memory.remember([scene("Почему я не чувствую шаг в себе?", session="D", tenant="t2")])
    assert other_tenant.echoes == []


def test_answers_are_linked_and_come_back_as_echoes(memory):
    ((first, _),) = memory.remember([scene("Почему я не чувствую шаг в себе?")])
    out = LoraOutput(
        message_id=first.message_id,
        session_id="s1",
        scene_id=first.scene_id,
        tenant="t1",
        text="Почувствуй стопы на полу.",
        register="body",
        adapter="body",
        engine="x",
        model="m",
        delta_code=first.delta_code,
    )
    events = memory.link([out])
    assert events[0].event == "linked" and events[0].details["archived_scene"]
    assert memory.archive.get(first.scene_id)["answer"] == "Почувствуй стопы на полу."
    ((second, _),) = memory.remember([scene("Я не чувствую своих шагов, почему так?")])
    assert second.echoes[0]["answer"] == "Почувствуй стопы на полу."


def test_replays_do_not_touch_the_archive(memory):
    ((first, _),) = memory.remember([scene("Почему я не чувствую шаг в себе?")])
    count = memory.archive.count()
    ((replayed, events),) = memory.remember([scene("Почему я не чувствую шаг в себе?", replay_of=first.message_id)])
    assert memory.archive.count() == count and [e.event for e in events] == ["recalled"]
    out = LoraOutput(
        message_id="r1",
        session_id="s1",
        scene_id=first.scene_id,
        tenant="t1",
        text="new",
        register="body",
        adapter="body",
        engine="x",
        model="m",
        delta_code="Δ1",
        replay_of=first.message_id,
    )
    assert memory.link([out]) == []
    assert "answer" not in memory.archive.get(first.scene_id)
