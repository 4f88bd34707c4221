"""docker-compose.yml, Dockerfile and .dockerignore, checked without a Docker engine.

The compose file is parsed with PyYAML and checked for structure; when the
``docker-compose`` executable is installed (Debian's docker-compose, v1) it also
has to pass ``docker-compose config -q``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml  # in the project's test extras

from scenestream.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

PREFIX = "SCENESTREAM_"
STAGES = ("tokenizer", "scene", "memory", "decoder")
INFRA = ("kafka", "qdrant", "vllm")
SCENESTREAM_SERVICES = ("topics-init",) + STAGES
REGISTERS = ("poet", "logician", "body", "philosopher")


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def _resolve(value):
    """The value compose gives with an empty shell: ${VAR:-default} becomes default."""
    if value is None:
        return None
    return _INTERPOLATION.sub(lambda m: m.group("default") or "", str(value))


def _command(service: dict) -> list[str]:
    command = service.get("command")
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _condition(service: dict, dependency: str) -> str:
    depends = service.get("depends_on") or {}
    assert isinstance(depends, dict), "depends_on needs the long form with conditions"
    assert dependency in depends, f"missing depends_on {dependency}"
    return depends[dependency].get("condition", "service_started")


# --- docker-compose itself ---------------------------------------------------


def test_docker_compose_config_accepts_the_file():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose); structural checks still run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    result = subprocess.run(
        [exe, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr or result.stdout


# --- structure -----------------------------------------------------------------


def test_all_services_present(services):
    for name in INFRA + SCENESTREAM_SERVICES:
        assert name in services, f"service {name} missing"


def test_kafka_is_a_single_kraft_node(services):
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    env = {k: _resolve(v) for k, v in _env(kafka).items()}
    roles = {role.strip() for role in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}
    node_id = str(env["KAFKA_NODE_ID"])
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [voter.split("@")[0] for voter in voters] == [node_id]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    assert controller in listeners
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners <= set(protocol_map)
    advertised = {item.split("://")[0] for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert controller not in advertised and advertised <= listeners
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    # the apache/kafka image formats its KRaft storage with CLUSTER_ID
    assert env.get("CLUSTER_ID"), "CLUSTER_ID is needed to format the KRaft storage"
    assert kafka.get("healthcheck", {}).get("test"), "kafka needs a healthcheck for topics-init"


def test_qdrant_and_vllm(services):
    qdrant = services["qdrant"]
    assert str(qdrant["image"]).startswith("qdrant/qdrant")
    assert any("6333" in str(port) for port in qdrant.get("ports", []))
    assert any("/qdrant/storage" in str(volume) for volume in qdrant.get("volumes", []))

    vllm = services["vllm"]
    assert str(vllm["image"]).startswith("vllm/vllm-openai")
    args = _command(vllm)
    assert "--enable-lora" in args
    assert args[args.index("--model") + 1] == "/models/base"
    modules = args[args.index("--lora-modules") + 1 :]
    declared = {item.split("=")[0]: item.split("=")[1] for item in modules if "=" in item}
    assert declared == {name: f"/adapters/{name}" for name in REGISTERS}
    assert int(args[args.index("--max-loras") + 1]) >= len(REGISTERS)
    mounts = " ".join(str(volume) for volume in vllm.get("volumes", []))
    assert ":/models" in mounts and ":/adapters" in mounts
    assert any("8000" in str(port) for port in vllm.get("ports", []))
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_topics_init_runs_once_after_kafka_is_healthy(services):
    init = services["topics-init"]
    assert _command(init) == ["topics", "create"]
    assert str(init.get("restart", "no")) == "no"
    assert _condition(init, "kafka") == "service_healthy"


@pytest.mark.parametrize("stage", STAGES)
def test_worker_runs_its_stage(services, stage):
    worker = services[stage]
    assert _command(worker) == ["run", "--stages", stage]
    assert worker["image"] == services["topics-init"]["image"], "one scenestream image for every service"
    assert _condition(worker, "topics-init") == "service_completed_successfully"
    # replicas of one stage must be interchangeable
    assert "container_name" not in worker and not worker.get("ports")


def test_stage_dependencies(services):
    assert _condition(services["memory"], "qdrant") in ("service_started", "service_healthy")
    assert _condition(services["decoder"], "vllm") in ("service_started", "service_healthy")
    for stage in ("tokenizer", "scene"):
        assert services[stage].get("deploy", {}).get("replicas", 1) >= 2


# --- configuration: SCENESTREAM_ variables only ---------------------------------


@pytest.mark.parametrize("name", SCENESTREAM_SERVICES)
def test_scenestream_services_use_only_scenestream_variables(services, name):
    env = _env(services[name])
    assert env, f"{name} has no environment"
    foreign = [key for key in env if not key.startswith(PREFIX)]
    assert not foreign, f"{name} sets non-SCENESTREAM_ variables {foreign}"
    assert _resolve(env["SCENESTREAM_BROKER"]).startswith("kafka://")


def test_every_scenestream_variable_is_a_setting(compose):
    text = COMPOSE.read_text(encoding="utf-8")
    used = set(re.findall(r"\bSCENESTREAM_[A-Z0-9_]+\b", text))
    # SCENESTREAM_IMAGE / _MODELS_DIR / _ADAPTERS_DIR are compose-only interpolation
    # variables (never passed into a container)
    set_in_containers = set()
    for service in compose["services"].values():
        set_in_containers.update(key for key in _env(service) if key.startswith(PREFIX))
    assert set_in_containers <= used
    known = set(Settings.model_fields)
    unknown = sorted(n for n in set_in_containers if n[len(PREFIX) :].lower() not in known)
    assert not unknown, f"not fields of scenestream.settings.Settings: {unknown}"
    compose_only = used - set_in_containers
    assert compose_only <= {"SCENESTREAM_IMAGE", "SCENESTREAM_MODELS_DIR", "SCENESTREAM_ADAPTERS_DIR"}, compose_only


def test_memory_and_decoder_settings(services):
    assert _resolve(_env(services["memory"])["SCENESTREAM_QDRANT_URL"]) == "http://qdrant:6333"
    decoder = {k: _resolve(v) for k, v in _env(services["decoder"]).items()}
    assert decoder["SCENESTREAM_ENGINE"] in ("vllm", "openai", "transformers")
    assert decoder["SCENESTREAM_OPENAI_BASE_URL"] == "http://vllm:8000/v1"
    assert decoder["SCENESTREAM_BASE_MODEL"]


@pytest.mark.parametrize("name", SCENESTREAM_SERVICES)
def test_default_values_validate(services, name):
    """The values a container gets with an empty shell are valid settings."""
    values = {}
    for key, value in _env(services[name]).items():
        field = key[len(PREFIX) :].lower()
        resolved = _resolve(value)
        if resolved is None or field not in Settings.model_fields:
            continue  # passed through from the shell only when set / future field
        values[field] = resolved
    settings = Settings(**values)
    assert str(settings.data_dir) == "/data"
    assert settings.bootstrap_servers == ["kafka:9092"]


# --- image ---------------------------------------------------------------------


def test_dockerfile_copies_every_source_tree():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r'^ENTRYPOINT \["scenestream"\]$', text, re.M)
    assert re.search(r'^CMD \["run"\]$', text, re.M)
    assert re.search(r"^USER (?!root\b|0\b)\S+", text, re.M), "the image must run as a non-root user"
    assert re.search(r"SCENESTREAM_DATA_DIR=/data\b", text)
    assert re.search(r"^VOLUME .*/data", text, re.M)
    copied = {m.rstrip("/") for line in re.findall(r"^COPY (.+)$", text, re.M) for m in line.split()[:-1]}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    sources = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    missing = sources - copied
    assert not missing, f"Dockerfile does not copy {missing}"
    assert {"pyproject.toml", "README.md", "data"} <= copied


def test_dockerignore_keeps_the_copied_sources():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".venv", ".git"):
        assert required in patterns
    assert any("__pycache__" in p for p in patterns)
    for source in ("scenestream", "agents", "schemas", "topics", "ops", "data", "pyproject.toml", "README.md"):
        assert source not in patterns
