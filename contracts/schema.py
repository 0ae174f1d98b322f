"""JSON Schema for non-Python producers and consumers (`fleet contracts schema`)."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.messages import ControlMessage, ReplyEvent, Request, UsageRecord, WorkerStatus


def json_schemas() -> dict[str, Any]:
    """One JSON Schema document per topic payload, sharing `$defs`."""
    kinds = [Request, ReplyEvent, ControlMessage, WorkerStatus, UsageRecord]
    schemas, components = msgspec.json.schema_components(kinds, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "llm-fleet wire contract",
        "topics": {
            "llm.requests": schemas[0],
            "reply_to": schemas[1],
            "llm.control": schemas[2],
            "llm.fleet.status": schemas[3],
            "llm.usage": schemas[4],
        },
        "$defs": components,
    }
