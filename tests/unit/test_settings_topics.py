import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from scenestream.settings import Settings, describe_settings
from scenestream.topics import PIPELINE, all_topic_names, resolve

ROOT = Path(__file__).resolve().parents[2]


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("SCENESTREAM_BROKER", "kafka://k1:9092,k2:9093")
    monkeypatch.setenv("SCENESTREAM_PARTITIONS", "12")
    s = Settings()
    assert s.bootstrap_servers == ["k1:9092", "k2:9093"] and s.partitions == 12


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        Settings().partitions = 3


@pytest.mark.parametrize("bad", ["localhost:9092", "kafka://nohost", "kafka://h:port"])
def test_bad_broker_address_is_a_clear_error(bad):
    with pytest.raises(ValidationError) as err:
        Settings(broker=bad)
    assert "SCENESTREAM_BROKER" in str(err.value) or "host:port" in str(err.value)


def test_sasl_settings_pass_through():
    s = Settings(
        broker="kafka://h:1",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password="p",
    )
    assert s.kafka_auth() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }


def test_every_setting_is_described_and_the_password_hidden(monkeypatch):
    rows = describe_settings()
    assert all(name.startswith("SCENESTREAM_") and doc for name, _v, doc in rows)
    assert len(rows) == len(Settings.model_fields)


def test_topics_and_dlqs():
    s = Settings(topic_prefix="t1-")
    names = all_topic_names(s)
    assert (
        "t1-raw-text" in names
        and "t1-raw-text.dlq" in names
        and len(names) == len(PIPELINE) + sum(d.has_dlq for d in PIPELINE)
    )
    assert resolve("tokens", s)[0] == "t1-tokens"
    assert resolve("raw-text.dlq", s)[1].__name__ == "DeadLetter"
    with pytest.raises(KeyError):
        resolve("nope", s)


def test_every_package_directory_is_installed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    mapping = {
        "agents": "scenestream.agents",
        "schemas": "scenestream.schemas",
        "topics": "scenestream.topics",
        "ops": "scenestream.ops",
        "scenestream": "scenestream",
    }
    found = set()
    for top, package in mapping.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([package, *rel.parts]))
    assert found == listed


def test_producers_are_idempotent_with_acks_all_except_on_a_loopback_broker():
    import pytest

    from scenestream.settings import Settings

    cluster = Settings(broker="kafka://kafka-1:9092,kafka-2:9092")
    assert cluster.producer_acks == "all" and cluster.idempotent_producer
    assert not Settings(broker="kafka://127.0.0.1:9092").idempotent_producer  # the embedded Tansu lacks it
    assert Settings(broker="kafka://127.0.0.1:9092", producer_idempotence="on").idempotent_producer
    assert not Settings(broker="kafka://kafka-1:9092", producer_idempotence="off").idempotent_producer
    assert not Settings(broker="kafka://kafka-1:9092", producer_acks="1").idempotent_producer
    with pytest.raises(ValueError, match="needs SCENESTREAM_PRODUCER_ACKS=all"):
        Settings(producer_idempotence="on", producer_acks="1")


def test_the_log_level_takes_any_case_and_refuses_what_logging_does_not_know():
    import pydantic

    assert Settings(log_level="info").log_level == "INFO"
    with pytest.raises(pydantic.ValidationError, match="log_level"):
        Settings(log_level="chatty")
