"""router/stages/cancel.py on hand-made records: a cancel through the intake is relayed for the tenant it
authenticated as (by its topic or its key), only signed; anything that is not a cancel (a request whose text or
reply topic says "cancel", a body with an id and no type, odd bytes) goes on to the request stages."""

from __future__ import annotations

import json

import msgspec
import pytest

from contracts import ErrorCode
from fleet.settings import Settings, TenantSettings
from fleet.tenants import mint_key
from router.policies.tenants import Tenants
from router.stages.base import Context, Continue, Reject, RelayCancel
from router.stages.cancel import CancelStage

KEY, HASH = mint_key()
S = Settings(
    tenants=[
        msgspec.convert({"name": "alpha", "api_key_hashes": [str(HASH)]}, TenantSettings),
        msgspec.convert({"name": "gamma"}, TenantSettings),
    ]
)
JSON = ("content-type", b"application/json")


def run(value: bytes, topic: str = "llm.requests", headers: list | None = None, signed: bool = True) -> object:
    stage = CancelStage(Tenants(S), signed=signed)
    return stage(Context(value, [JSON, *(headers or [])], 0, 0, topic=topic))


def cancel(rid: str = "r1") -> bytes:
    return json.dumps({"type": "cancel", "id": rid}).encode()


def test_a_cancel_on_a_tenants_intake_topic_is_relayed_for_that_tenant() -> None:
    assert run(cancel(), topic=S.kafka.topics.tenant_intake("gamma")) == RelayCancel("gamma", "r1")


def test_a_cancel_with_a_key_on_the_shared_intake_is_relayed_for_the_key_s_tenant() -> None:
    assert run(cancel(), headers=[("fleet-api-key", KEY.encode())]) == RelayCancel("alpha", "r1")


def test_a_cancel_nobody_authenticated_is_refused_with_a_dlq_copy_and_no_reply() -> None:
    out = run(cancel())
    assert isinstance(out, Reject) and out.code is ErrorCode.UNAUTHENTICATED
    assert out.to_dlq and out.reply_to is None


def test_without_a_record_key_a_cancel_is_refused_rather_than_relayed_unsigned() -> None:
    out = run(cancel(), topic=S.kafka.topics.tenant_intake("gamma"), signed=False)
    assert isinstance(out, Reject) and out.code is ErrorCode.INTERNAL and "record_key" in out.message


@pytest.mark.parametrize(
    "value",
    [
        json.dumps({"id": "r1", "reply_to": "llm.replies.gamma.cancel", "prompt": "cancel it"}).encode(),
        json.dumps({"id": "r1", "type": "cancelled"}).encode(),
        json.dumps({"type": "cancel"}).encode(),
        json.dumps({"type": "cancel", "id": 5}).encode(),
        b"cancel\xff\x00",
        b"",
        json.dumps({"type": "cancel", "id": "x" * 5000}).encode(),  # longer than any cancel: a request's stages
    ],
)
def test_anything_that_is_not_a_cancel_goes_on_to_the_request_stages(value: bytes) -> None:
    assert isinstance(run(value, topic=S.kafka.topics.tenant_intake("gamma")), Continue)
