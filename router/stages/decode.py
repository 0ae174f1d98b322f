"""Decode: the content type from the headers, the size bound before decoding, then the typed request.
A record that fails is refused to the DLQ, answered where its id and reply_to can be salvaged."""

from __future__ import annotations

import msgspec

from contracts.codec import Codec, ContentType, DecodeFailure, content_type_from_headers
from contracts.messages import ErrorCode
from contracts.validation import InvalidRequest, check_size
from fleet.settings import Settings
from router.stages.base import Context, Continue, Reject, Verdict

JSON = ContentType.JSON.value


class Decode:
    name = "decode"

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self._limits = settings.limits
        self._codec = codec

    def __call__(self, ctx: Context) -> Verdict:
        value = ctx.value
        try:
            ct = content_type_from_headers(ctx.headers)
        except DecodeFailure as exc:  # an unsupported content type: still answer the sender if we can
            s = self._codec.salvage(value or b"", ContentType.JSON)
            return Reject(
                exc.code, exc.message, s.get("id"), s.get("reply_to"), to_dlq=True, content_type=s.get("encoding", JSON)
            )
        try:
            check_size(value, self._limits)
        except InvalidRequest as exc:  # before decoding: the reply and DLQ copy must not depend on the body
            s = self._codec.salvage(value or b"", ct)
            return Reject(
                exc.code,
                exc.message,
                s.get("id"),
                s.get("reply_to"),
                to_dlq=True,
                content_type=s.get("encoding", ct.value),
            )
        try:
            if not value:
                raise DecodeFailure(ErrorCode.INVALID_ENCODING, "empty message body")
            req = self._codec.decode_request(value, ct)
        except DecodeFailure as exc:
            s = exc.salvaged
            return Reject(
                exc.code, exc.message, s.get("id"), s.get("reply_to"), to_dlq=True, content_type=s.get("encoding", JSON)
            )
        return Continue(msgspec.structs.replace(ctx, content_type=ct, request=req))
