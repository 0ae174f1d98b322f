"""The public wire contract of llm-fleet.

Pure: msgspec structs, topic and header names, codecs and validation. Nothing
here imports aiokafka or torch, so any service (and the schema export) can use
it without the fleet's heavy dependencies.
"""

from contracts.codec import Codec, ContentType, DecodeFailure, content_type_from_headers
from contracts.messages import (
    Cancel,
    ChatMessage,
    Chunk,
    ControlMessage,
    Done,
    Error,
    ErrorCode,
    FinishReason,
    Priority,
    ReplyEvent,
    Request,
    Timings,
    Usage,
    UsageRecord,
    WorkerStatus,
)
from contracts.topics import Headers, Topics
from contracts.validation import InvalidRequest, Limits, validate_request

__all__ = [
    "Cancel",
    "ChatMessage",
    "Chunk",
    "Codec",
    "ContentType",
    "ControlMessage",
    "DecodeFailure",
    "Done",
    "Error",
    "ErrorCode",
    "FinishReason",
    "Headers",
    "InvalidRequest",
    "Limits",
    "Priority",
    "ReplyEvent",
    "Request",
    "Timings",
    "Topics",
    "Usage",
    "UsageRecord",
    "WorkerStatus",
    "content_type_from_headers",
    "validate_request",
]
