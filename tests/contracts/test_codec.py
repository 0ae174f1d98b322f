"""Round trips in both encodings, schema evolution, content-type handling."""

from __future__ import annotations

import json

import msgspec
import pytest

from contracts import (
    Cancel,
    ChatMessage,
    Chunk,
    Codec,
    ContentType,
    DecodeFailure,
    Done,
    Error,
    ErrorCode,
    FinishReason,
    Request,
    Timings,
    Usage,
    content_type_from_headers,
)
from contracts.schema import json_schemas

CODEC = Codec()
REQ = Request(
    id="req-1",
    reply_to="llm.replies.billing",
    messages=[ChatMessage("user", "hi é ✓")],
    max_tokens=12,
    temperature=0.7,
    top_p=0.9,
    stop=["\n\n"],
    seed=7,
    timeout_ms=3000,
    tenant="billing",
    metadata={"k": [1, 2, {"x": None}]},
)
EVENTS = [
    Chunk(id="req-1", seq=0, text="The ", run_id="r1"),
    Done(
        id="req-1",
        seq=1,
        text="The end",
        finish_reason=FinishReason.STOP,
        model="small",
        usage=Usage(3, 2),
        timings=Timings(queue_ms=1.0, ttft_ms=2.0, tpot_ms=0.5, total_ms=4.0),
        run_id="r1",
    ),
    Error(id="req-1", code=ErrorCode.EXPIRED, message="late", retriable=False),
]


@pytest.mark.parametrize("ct", list(ContentType))
def test_request_round_trip(ct: ContentType) -> None:
    assert CODEC.decode_request(CODEC.encode(REQ, ct), ct) == REQ


@pytest.mark.parametrize("ct", list(ContentType))
@pytest.mark.parametrize("event", EVENTS)
def test_reply_round_trip(ct: ContentType, event: Chunk | Done | Error) -> None:
    assert CODEC.decode_reply(CODEC.encode(event, ct), ct) == event


def test_reply_is_tagged_on_type() -> None:
    assert json.loads(CODEC.encode(EVENTS[0]))["type"] == "chunk"
    assert json.loads(CODEC.encode(EVENTS[1]))["type"] == "done"
    assert json.loads(CODEC.encode(Cancel("x"))) == {"type": "cancel", "id": "x"}


def test_design_doc_example_decodes() -> None:
    raw = b"""{"id": "req-123", "reply_to": "llm.replies.billing", "prompt": "Summarise ...", "model": "auto",
     "max_tokens": 128, "temperature": 0.0, "top_p": 1.0, "stop": [], "seed": null, "timeout_ms": 30000,
     "priority": "interactive", "tenant": "billing", "metadata": {}}"""
    req = CODEC.decode_request(raw, ContentType.JSON)
    assert req.id == "req-123" and req.prompt == "Summarise ..." and req.timeout_ms == 30000


class RequestV2(msgspec.Struct, frozen=True, kw_only=True):
    """Tomorrow's request: today's fields plus one new field with a default."""

    id: str
    reply_to: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    model: str = "auto"
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = msgspec.field(default_factory=list)
    seed: int | None = None
    timeout_ms: int | None = None
    deadline_ms: int | None = None
    priority: str = "interactive"
    tenant: str | None = None
    metadata: dict[str, object] = msgspec.field(default_factory=dict)
    logprobs: int = 0


@pytest.mark.parametrize("ct", list(ContentType))
def test_old_bytes_decode_after_a_field_is_added(ct: ContentType) -> None:
    old_bytes = CODEC.encode(REQ, ct)
    dec = msgspec.json.Decoder(RequestV2) if ct is ContentType.JSON else msgspec.msgpack.Decoder(RequestV2)
    new = dec.decode(old_bytes)
    assert new.id == REQ.id and new.logprobs == 0 and new.messages == REQ.messages


@pytest.mark.parametrize("ct", list(ContentType))
def test_new_bytes_decode_with_todays_structs(ct: ContentType) -> None:
    enc = msgspec.json.Encoder() if ct is ContentType.JSON else msgspec.msgpack.Encoder()
    new_bytes = enc.encode(RequestV2(id="a", reply_to="r", prompt="p", logprobs=5))
    assert CODEC.decode_request(new_bytes, ct).prompt == "p"


def test_not_json_is_invalid_encoding() -> None:
    with pytest.raises(DecodeFailure) as e:
        CODEC.decode_request(b"\x00\xffnot json", ContentType.JSON)
    assert e.value.code is ErrorCode.INVALID_ENCODING


def test_missing_id_is_invalid_request_and_salvages_reply_to() -> None:
    with pytest.raises(DecodeFailure) as e:
        CODEC.decode_request(b'{"reply_to": "r", "prompt": "x"}', ContentType.JSON)
    assert e.value.code is ErrorCode.INVALID_REQUEST
    assert "id" in e.value.message and e.value.salvaged == {"reply_to": "r"}


def test_msgpack_labelled_json_salvages_through_msgpack() -> None:
    with pytest.raises(DecodeFailure) as e:
        CODEC.decode_request(CODEC.encode(REQ, ContentType.MSGPACK), ContentType.JSON)
    assert e.value.code is ErrorCode.INVALID_ENCODING
    assert e.value.salvaged["id"] == "req-1" and e.value.salvaged["encoding"] == "application/msgpack"


def test_content_type_header() -> None:
    assert content_type_from_headers(None) is ContentType.JSON
    assert content_type_from_headers([("content-type", b"application/msgpack")]) is ContentType.MSGPACK
    assert content_type_from_headers([("Content-Type", b"application/json; charset=utf-8")]) is ContentType.JSON
    with pytest.raises(DecodeFailure) as e:
        content_type_from_headers([("content-type", b"text/xml")])
    assert e.value.code is ErrorCode.INVALID_ENCODING


def test_json_schema_covers_every_topic() -> None:
    s = json_schemas()
    assert set(s["topics"]) == {"llm.requests", "reply_to", "llm.control", "llm.fleet.status", "llm.usage"}
    req = s["$defs"]["Request"]
    assert set(req["required"]) == {"id", "reply_to"} and "max_tokens" in req["properties"]
