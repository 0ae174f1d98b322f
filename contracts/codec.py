"""JSON and msgpack codecs, chosen by the `content-type` header.

One typed decoder per message kind and encoding, built once (msgspec's
recommended pattern). A reply is encoded in the encoding of its request.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

from contracts.errors import FleetError
from contracts.messages import ControlMessage, ErrorCode, ReplyEvent, Request, UsageRecord, WorkerStatus
from contracts.topics import Headers

T = TypeVar("T")


class ContentType(enum.StrEnum):
    JSON = "application/json"
    MSGPACK = "application/msgpack"


_ALIASES = {
    "application/json": ContentType.JSON,
    "json": ContentType.JSON,
    "application/msgpack": ContentType.MSGPACK,
    "application/x-msgpack": ContentType.MSGPACK,
    "application/vnd.msgpack": ContentType.MSGPACK,
    "msgpack": ContentType.MSGPACK,
}


class DecodeFailure(FleetError):
    """A message could not be decoded into its contract type.

    `code` is the error code to report; `salvaged` holds whatever `id` and
    `reply_to` could still be read from the bytes, so the sender can be told.
    """

    def __init__(self, code: ErrorCode, message: str, salvaged: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code.value)
        self.code: ErrorCode = code  # the wire code (a str enum, so still a str)
        self.salvaged = salvaged or {}


def content_type_from_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> ContentType:
    """The content type a message declares (the first content-type header with a value); JSON when it
    declares none.

    Raises DecodeFailure for a content type the fleet does not speak.
    """
    for name, value in headers or ():
        if isinstance(name, str) and name.lower() == Headers.CONTENT_TYPE:
            if value is None:  # a header with a null value (legal in Kafka) declares nothing: the next may
                continue
            raw = bytes(value).decode("utf-8", "replace").split(";", 1)[0].strip().lower()
            try:
                return _ALIASES[raw]
            except KeyError:
                raise DecodeFailure(
                    ErrorCode.INVALID_ENCODING,
                    f"unsupported content-type {raw[:100]!r}; use application/json or application/msgpack",
                ) from None
    return ContentType.JSON


class _Pair:
    """A typed decoder for one message kind in both encodings."""

    def __init__(self, kind: Any) -> None:
        self.json = msgspec.json.Decoder(kind)
        self.msgpack = msgspec.msgpack.Decoder(kind)

    def decode(self, data: bytes, ct: ContentType) -> Any:
        return (self.json if ct is ContentType.JSON else self.msgpack).decode(data)


class Codec:
    """Encoders and decoders for every topic the fleet reads or writes."""

    def __init__(self) -> None:
        self._json_enc = msgspec.json.Encoder()
        self._msgpack_enc = msgspec.msgpack.Encoder()
        self._request = _Pair(Request)
        self._reply = _Pair(ReplyEvent)
        self._control = _Pair(ControlMessage)
        self._status = _Pair(WorkerStatus)
        self._usage = _Pair(UsageRecord)
        self._any_json = msgspec.json.Decoder()
        self._any_msgpack = msgspec.msgpack.Decoder()

    # -- encoding --------------------------------------------------------
    def encode(self, obj: Any, ct: ContentType = ContentType.JSON) -> bytes:
        return self._json_enc.encode(obj) if ct is ContentType.JSON else self._msgpack_enc.encode(obj)

    # -- decoding --------------------------------------------------------
    def decode_request(self, data: bytes, ct: ContentType) -> Request:
        try:
            req: Request = self._request.decode(data, ct)
            return req
        except msgspec.ValidationError as exc:
            raise DecodeFailure(ErrorCode.INVALID_REQUEST, str(exc), self.salvage(data, ct)) from None
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:  # ValueError: invalid UTF-8
            raise DecodeFailure(
                ErrorCode.INVALID_ENCODING, f"body is not valid {ct.value}: {exc}", self.salvage(data, ct)
            ) from None

    def decode_reply(self, data: bytes, ct: ContentType = ContentType.JSON) -> ReplyEvent:
        return self._decode(self._reply, data, ct)  # type: ignore[no-any-return]

    def decode_control(self, data: bytes, ct: ContentType = ContentType.JSON) -> ControlMessage:
        return self._decode(self._control, data, ct)  # type: ignore[no-any-return]

    def decode_status(self, data: bytes, ct: ContentType = ContentType.JSON) -> WorkerStatus:
        return self._decode(self._status, data, ct)  # type: ignore[no-any-return]

    def decode_usage(self, data: bytes, ct: ContentType = ContentType.JSON) -> UsageRecord:
        return self._decode(self._usage, data, ct)  # type: ignore[no-any-return]

    def _decode(self, pair: _Pair, data: bytes, ct: ContentType) -> Any:
        try:
            return pair.decode(data, ct)
        except msgspec.ValidationError as exc:
            raise DecodeFailure(ErrorCode.INVALID_REQUEST, str(exc)) from None
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:  # ValueError: invalid UTF-8
            raise DecodeFailure(ErrorCode.INVALID_ENCODING, f"body is not valid {ct.value}: {exc}") from None

    def salvage(self, data: bytes, ct: ContentType) -> dict[str, str]:
        """Best effort: read `id` and `reply_to` from a body that failed typed decoding.

        Tries the declared encoding first, then the other one (a msgpack body
        labelled as JSON can still be answered on its `reply_to`).
        """
        order = (ct, ContentType.MSGPACK if ct is ContentType.JSON else ContentType.JSON)
        for candidate in order:
            dec = self._any_json if candidate is ContentType.JSON else self._any_msgpack
            try:
                obj = dec.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError):
                continue
            if not isinstance(obj, dict):
                continue
            out: dict[str, str] = {}
            for key in ("id", "reply_to"):
                value = obj.get(key)
                if isinstance(value, str) and value:
                    out[key] = value
            if candidate is not ct:
                out["encoding"] = candidate.value
            return out
        return {}


def headers_dict(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as a str->str dict (last value wins; undecodable bytes replaced)."""
    return {k: v.decode("utf-8", "replace") for k, v in (headers or ()) if isinstance(v, bytes | bytearray)}
