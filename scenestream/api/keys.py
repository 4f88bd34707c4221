"""API keys and their tenants (``SCENESTREAM_API_KEYS``).

The setting is a file of ``key tenant`` lines (blank lines and ``#`` comments skipped), or inline
``key=tenant,key2=tenant2``. With keys, a request names its key in ``Authorization: Bearer <key>`` and works
inside that key's tenant; with none, every request is the tenant ``default`` and ``serve`` binds only a
loopback address unless told ``--insecure``.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from pathlib import Path
from typing import Optional

from scenestream.api.openai_types import APIError

DEFAULT_TENANT = "default"
NAME = re.compile(r"^[A-Za-z0-9._~+/=-]{1,256}$")  # what a key and a tenant may be (no blanks, no separators)


class KeysError(ValueError):
    """``SCENESTREAM_API_KEYS`` cannot be read; the message says where and why."""


def parse_keys(value: Optional[str]) -> dict[str, str]:
    """Key → tenant from the setting's value: a path to an existing file, or the inline form."""
    if value is None or not value.strip():
        return {}
    path = Path(value).expanduser()
    if "=" not in value and path.is_file():
        return parse_lines(path.read_text(encoding="utf-8").splitlines(), str(path))
    if "=" not in value:
        raise KeysError(f"SCENESTREAM_API_KEYS={value!r} is neither a file of `key tenant` lines nor `key=tenant,...`")
    pairs = []
    for n, item in enumerate(value.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        key, sep, tenant = item.partition("=")
        if not sep:
            raise KeysError(f"SCENESTREAM_API_KEYS entry {n} {item[:8]!r}… is not key=tenant")
        pairs.append((key.strip(), tenant.strip(), f"entry {n}"))
    return _checked(pairs, "SCENESTREAM_API_KEYS")


def parse_lines(lines: list[str], where: str) -> dict[str, str]:
    pairs = []
    for n, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise KeysError(f"{where} line {n}: expected `key tenant`, got {len(parts)} words")
        pairs.append((parts[0], parts[1], f"line {n}"))
    if not pairs:
        raise KeysError(f"{where} holds no `key tenant` line")
    return _checked(pairs, where)


def _checked(pairs: list[tuple[str, str, str]], where: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for key, tenant, at in pairs:
        if not NAME.match(key):
            raise KeysError(f"{where} {at}: a key is 1 to 256 characters of letters, digits and ._~+/=-")
        if not NAME.match(tenant):
            raise KeysError(f"{where} {at}: tenant {tenant[:40]!r} is not 1 to 256 letters, digits or ._~+/=-")
        if key in keys:
            raise KeysError(f"{where} {at}: the key is given twice")
        keys[key] = tenant
    return keys


def tenant_for(keys: dict[str, str], authorization: Optional[str]) -> str:
    """The tenant of the request's ``Authorization`` header: 401 when keys are set and it is missing or
    wrong; ``default`` when no keys are set."""
    if not keys:
        return DEFAULT_TENANT
    if not authorization:
        raise APIError(401, "an API key is needed: send `Authorization: Bearer <key>`", code="missing_api_key")
    scheme, _, given = authorization.strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise APIError(401, "the Authorization header must be `Bearer <key>`", code="invalid_api_key")
    found = None
    for key, tenant in keys.items():  # every key compared in constant time: no early exit on a match
        if hmac.compare_digest(key.encode(), given.encode()):
            found = tenant
    if found is None:
        raise APIError(401, "the API key is not valid", code="invalid_api_key")
    return found


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: dict[str, str], insecure: bool) -> None:
    """Refuse to serve without keys on an address other machines reach, unless ``insecure``."""
    if not keys and not insecure and not is_loopback(host):
        raise KeysError(
            f"refusing to serve on {host} without API keys: set SCENESTREAM_API_KEYS (a file of `key tenant` "
            "lines, or key=tenant,...), bind a loopback address, or pass --insecure"
        )
