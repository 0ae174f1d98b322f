"""Records only the fleet's own processes can write: an HMAC-SHA256 over a record's kind, key and value, in
header `fleet-mac`, keyed by a secret the router and the workers share (`[kafka] record_key`, or
FLEET_RECORD_KEY; `fleet up` makes one per run). Pure: no I/O.

Trust boundaries are topics, and anyone who can write a topic can write any record on it. Where the broker has
no ACLs (the dev broker), or an ACL is wider than it should be, a record's place says nothing about its writer.
So the records that move money or text carry a MAC: requests the router forwarded (a worker serves only those:
nobody skips the router's authentication, limits and budgets by writing to a model topic), usage records (a
router settles a tenant's reservation only with a worker's) and progress records (a worker resumes only from
another worker's). The kind is part of what is signed, so a record of one kind is never valid as another.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable

MAC_HEADER = "fleet-mac"


class Kind(enum.StrEnum):
    REQUEST = "request"  # router -> model topic
    USAGE = "usage"  # worker -> llm.usage
    PROGRESS = "progress"  # worker -> llm.progress
    CANCEL = "cancel"  # router -> llm.control: a tenant's cancel relayed from its intake (key: the tenant)


class RecordMac:
    """Signs and checks records with one shared secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("record_key must be at least 16 characters (a random hex string of 64 is usual)")
        self._key = secret.encode()

    def sign(self, kind: Kind, key: bytes | None, value: bytes | None) -> bytes:
        """The MAC's hex digest: over the kind, the key and the value, each length-prefixed (no two different
        records sign alike)."""
        h = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (kind.value.encode(), key, value):
            if part is None:
                h.update(b"\xff\xff\xff\xff")
            else:
                h.update(len(part).to_bytes(4, "big"))
                h.update(part)
        return h.hexdigest().encode()

    def header(self, kind: Kind, key: bytes | None, value: bytes | None) -> tuple[str, bytes]:
        return MAC_HEADER, self.sign(kind, key, value)

    def verify(
        self, kind: Kind, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None
    ) -> bool:
        """Whether the record carries exactly one `fleet-mac` header, and it is this record's."""
        macs = [v for k, v in headers or () if isinstance(k, str) and k.lower() == MAC_HEADER]
        if len(macs) != 1 or not isinstance(macs[0], bytes | bytearray):
            return False
        return hmac.compare_digest(bytes(macs[0]), self.sign(kind, key, value))


def record_mac(secret: str | None) -> RecordMac | None:
    """The signer for a configured secret; None where none is configured (records are then neither signed nor
    checked, and the router says so at start when tenants are configured)."""
    return RecordMac(secret) if secret else None
