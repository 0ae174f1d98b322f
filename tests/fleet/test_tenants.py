"""API keys: minted keys verify against their hash and nothing else; hashes parse strictly; settings refuse
malformed tenants at start-up."""

from __future__ import annotations

import pytest

from fleet.settings import Settings, TenantSettings, load_settings
from fleet.tenants import MAX_KEY_BYTES, KeyHash, KeyRing, hash_key, mint_key


def test_a_minted_key_matches_its_hash_only() -> None:
    key, h = mint_key()
    assert key.startswith("fk_") and len(key) > 40
    assert h.matches(key.encode()) and not h.matches(key.encode()[:-1]) and not h.matches(b"")
    assert KeyHash.parse(str(h)) == h
    other_key, other = mint_key()
    assert other_key != key and other.salt != h.salt and not other.matches(key.encode())


def test_equal_keys_hash_differently_under_different_salts() -> None:
    assert hash_key("k").digest != hash_key("k").digest
    assert hash_key("k", b"12345678") == hash_key("k", b"12345678")


@pytest.mark.parametrize(
    "text",
    ["", "sha256", "md5:00:00", "sha256:zz:00", "sha256:0011:" + "00" * 32, "sha256:" + "00" * 16 + ":00", "a:b:c:d"],
)
def test_malformed_hashes_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(ValueError) as info:
        KeyHash.parse(text)
    assert len(text) < 10 or text not in str(info.value)


def test_the_key_ring_names_the_tenant_of_a_key_and_refuses_anything_else() -> None:
    ka, ha = mint_key()
    kb, hb = mint_key()
    ring = KeyRing([("a", str(ha)), ("b", str(hb))])
    assert ring.tenant_of(ka.encode()) == "a" and ring.tenant_of(kb.encode()) == "b"
    for bad in (None, b"", b"x" * (MAX_KEY_BYTES + 1), ka.encode() + b" ", b"\xff\xfe", ka.upper().encode()):
        assert ring.tenant_of(bad) is None


def test_settings_take_tenants_from_toml_and_refuse_bad_ones(tmp_path: object) -> None:
    _, h = mint_key()
    path = tmp_path / "t.toml"  # type: ignore[operator]
    path.write_text(
        f'[[tenants]]\nname = "billing"\napi_key_hashes = ["{h}"]\nallowed_models = ["small"]\n'
        'max_tokens = 64\ndefault_priority = "batch"\ndefault_timeout_ms = 5000\n'
    )
    s = load_settings(path, env={})
    t = s.tenant("billing")
    assert t is not None and t.max_tokens == 64 and t.default_priority == "batch"
    assert s.reply_prefixes(t) == ["llm.replies.billing."]
    assert s.tenant("nobody") is None
    bad = [
        'name = "a b"',  # not a topic suffix
        'name = "a"\napi_key_hashes = ["sha256:00"]',
        'name = "a"\nreply_prefixes = ["llm.requests."]',  # a fleet topic
        'name = "a"\nmax_tokens = 0',
        'name = "a"\ndefault_timeout_ms = 0',
        'name = "a"\nunknown = 1',
    ]
    for body in bad:
        path.write_text(f"[[tenants]]\n{body}\n")
        with pytest.raises(ValueError):
            load_settings(path, env={})
    path.write_text('[[tenants]]\nname = "a"\n[[tenants]]\nname = "a"\n')
    with pytest.raises(ValueError, match="unique"):
        load_settings(path, env={})


def test_no_tenants_is_the_default() -> None:
    assert Settings().tenants == [] and TenantSettings(name="x").allowed_models is None
