"""API keys of tenants: minting, salted hashes, constant-time checks. Pure: no I/O, no clock.

A key is 32 random bytes from `secrets` (256 bits, URL-safe text). For secrets of that entropy a salted
SHA-256 is the right hash: the slow hashes (bcrypt, scrypt, argon2) exist to make guessing a low-entropy
password expensive, and nobody can enumerate 2**256 keys however cheap each guess is; a slow hash would
only cost the router milliseconds of CPU on every request. The salt makes equal keys hash differently
(and a leaked config useless against other installations), and `hmac.compare_digest` compares digests in
time that does not depend on where they differ.

The key itself is never stored, logged, forwarded or copied to the DLQ: only its hash is configured.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from contracts.topics import Headers

SCHEME = "sha256"
KEY_PREFIX = "fk_"  # makes a leaked key recognisable to secret scanners
MAX_KEY_BYTES = 256  # a header longer than this is not a key this module minted: refused before hashing
_SALT_BYTES = 16
_KEY_BYTES = 32
_KEY_HEADER = Headers.API_KEY.lower()


@dataclass(frozen=True, slots=True)
class KeyHash:
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> KeyHash:
        """From the config form `sha256:<salt hex>:<digest hex>`; ValueError (never echoing it) otherwise."""
        parts = text.split(":")
        if len(parts) != 3 or parts[0] != SCHEME:
            raise ValueError("an API key hash must look like 'sha256:<salt hex>:<digest hex>'")
        try:
            salt, digest = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        except ValueError:
            raise ValueError("an API key hash's salt and digest must be hex") from None
        if len(salt) < 8 or len(digest) != hashlib.sha256().digest_size:
            raise ValueError("an API key hash needs a salt of at least 8 bytes and a 32-byte SHA-256 digest")
        return cls(salt, digest)

    def matches(self, key: bytes) -> bool:
        # hmac.compare_digest: the time taken does not depend on where two digests differ
        return hmac.compare_digest(_digest(self.salt, key), self.digest)

    def __str__(self) -> str:
        return f"{SCHEME}:{self.salt.hex()}:{self.digest.hex()}"


def _digest(salt: bytes, key: bytes) -> bytes:
    return hashlib.sha256(salt + key).digest()


def hash_key(key: str, salt: bytes | None = None) -> KeyHash:
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    return KeyHash(salt, _digest(salt, key.encode()))


def mint_key() -> tuple[str, KeyHash]:
    """A new API key and the hash to configure for it (the key is shown once and kept by the tenant)."""
    key = KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)
    return key, hash_key(key)


def key_values(headers: Iterable[tuple[object, object]]) -> list[object]:
    """The values of every `fleet-api-key` header, under any spelling of the name (header names are
    case-sensitive in Kafka; a key sent under another spelling is still a secret, and still counted)."""
    return [v for k, v in headers if isinstance(k, str) and k.lower() == _KEY_HEADER]


class _Tenant(Protocol):
    """What a key ring reads of a configured tenant (fleet.settings.TenantSettings, which imports this module)."""

    @property
    def name(self) -> str: ...
    @property
    def api_key_hashes(self) -> list[str]: ...


class KeyRing:
    """Tenant name by API key, over the configured hashes. Every configured hash is checked (no early exit),
    so the time taken does not say which tenant, or whether any, came close."""

    def __init__(self, hashes: Iterable[tuple[str, str]]) -> None:
        self._entries = [(tenant, KeyHash.parse(h)) for tenant, h in hashes]

    @classmethod
    def of(cls, tenants: Iterable[_Tenant]) -> KeyRing:
        """The ring of every configured tenant's keys (the router authenticates with it, workers check cancels)."""
        return cls((t.name, h) for t in tenants for h in t.api_key_hashes)

    def __len__(self) -> int:
        return len(self._entries)

    def tenant_of(self, key: object) -> str | None:
        if not isinstance(key, bytes | bytearray) or not key or len(key) > MAX_KEY_BYTES:
            return None
        key = bytes(key)
        found: str | None = None
        for tenant, h in self._entries:
            if h.matches(key) and found is None:
                found = tenant
        return found
