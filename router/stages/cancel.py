"""Cancel: a cancel message (`{"type": "cancel", "id": ...}`) that comes through the intake, on a tenant's own
intake topic or with its API key on the shared one, is relayed to the control topic for the tenant it
authenticated as. A tenant that may write only its intake topic (the topic names it: Kafka ACLs decide who may
write there) can so cancel its own requests; workers accept a relayed cancel only with the router's MAC and stop
only that tenant's runs of the id (worker/control.py). Without a record key (`kafka.record_key`) nothing can
prove the relay was the router's, so the cancel is refused `internal` (a DLQ copy says why) rather than relayed
unsigned. Anything that is not a cancel goes on to the request stages untouched.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts.codec import ContentType, DecodeFailure, content_type_from_headers
from contracts.messages import ErrorCode
from router.policies.tenants import Refused, Tenants
from router.stages.base import Context, Continue, Reject, RelayCancel, Verdict


class _CancelBody(msgspec.Struct):
    """What a cancel must say: its type, explicitly (a request has no `type`; decoding it as the tagged `Cancel`
    alone would take any body with an `id` for a cancel), and the id."""

    type: Literal["cancel"]
    id: str


_DECODE = {
    ContentType.JSON: msgspec.json.Decoder(_CancelBody).decode,
    ContentType.MSGPACK: msgspec.msgpack.Decoder(_CancelBody).decode,
}
MAX_CANCEL_BYTES = 4096  # a cancel is an id and a type; anything longer is a request, decoded after its size check


class CancelStage:
    name = "cancel"

    def __init__(self, tenants: Tenants, *, signed: bool) -> None:
        self._tenants = tenants
        self._signed = signed
        self.active = tenants.configured  # without tenants a cancel goes to the control topic directly

    def __call__(self, ctx: Context) -> Verdict:
        value = ctx.value
        if not value or len(value) > MAX_CANCEL_BYTES or b"cancel" not in value:  # a request: cheap tests first
            return Continue(ctx)
        try:
            msg = _DECODE[content_type_from_headers(ctx.headers)](value)
        except (msgspec.DecodeError, msgspec.ValidationError, DecodeFailure, KeyError, ValueError, RecursionError):
            return Continue(ctx)  # not a cancel: the request stages decide what it is
        who = self._tenants.identify(ctx.topic, ctx.headers)
        if isinstance(who, Refused):  # nobody authenticated: nowhere to answer, a DLQ copy alone
            return Reject(who.code, who.message, msg.id[:200] or None, None, to_dlq=True)
        if who.tenant is None:
            return Continue(ctx)  # the default tenant (not reached: the stage runs only with tenants)
        if not self._signed:
            why = "a cancel through the intake is relayed only signed: set kafka.record_key (FLEET_RECORD_KEY)"
            return Reject(ErrorCode.INTERNAL, why, msg.id[:200] or None, None, to_dlq=True)
        return RelayCancel(who.tenant.name, msg.id)
