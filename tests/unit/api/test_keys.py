"""API keys: the file and inline forms, their errors, the tenant of a request, the loopback rule."""

from __future__ import annotations

import pytest

from scenestream.api.keys import KeysError, check_bind, is_loopback, parse_keys, tenant_for
from scenestream.api.openai_types import APIError


def test_inline_keys():
    assert parse_keys("k1=acme, k2=globex,") == {"k1": "acme", "k2": "globex"}
    assert parse_keys(None) == {} and parse_keys("  ") == {}


def test_a_file_of_key_tenant_lines(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# key tenant\nk1 acme\n\n  k2   globex  # the second\n")
    assert parse_keys(str(path)) == {"k1": "acme", "k2": "globex"}


@pytest.mark.parametrize(
    "text, says",
    [
        ("k1 acme extra\n", "line 1: expected `key tenant`, got 3 words"),
        ("k1 acme\nk1 other\n", "line 2: the key is given twice"),
        ("# nothing\n", "holds no `key tenant` line"),
        ("k1 ac,me\n", "line 1: tenant"),
    ],
)
def test_a_bad_file_says_which_line(tmp_path, text, says):
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(KeysError, match=says.replace("`", ".").replace("(", ".")):
        parse_keys(str(path))


@pytest.mark.parametrize("value", ["k1=acme,k2", "=acme", "k1=", "k1=a,k1=b", "/no/such/file"])
def test_bad_inline_keys_are_refused(value):
    with pytest.raises(KeysError):
        parse_keys(value)


def test_the_tenant_of_a_request():
    keys = {"k1": "acme", "k2": "globex"}
    assert tenant_for(keys, "Bearer k2") == "globex"
    assert tenant_for(keys, "bearer  k1 ") == "acme"
    assert tenant_for({}, None) == "default" and tenant_for({}, "Bearer anything") == "default"
    for header, code in (
        (None, "missing_api_key"),
        ("Bearer nope", "invalid_api_key"),
        ("Basic k1", "invalid_api_key"),
    ):
        with pytest.raises(APIError) as caught:
            tenant_for(keys, header)
        assert caught.value.status == 401 and caught.value.code == code


def test_without_keys_only_loopback_unless_insecure():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    check_bind("127.0.0.1", {}, insecure=False)
    check_bind("0.0.0.0", {"k": "t"}, insecure=False)
    check_bind("0.0.0.0", {}, insecure=True)
    with pytest.raises(KeysError, match="--insecure"):
        check_bind("0.0.0.0", {}, insecure=False)
