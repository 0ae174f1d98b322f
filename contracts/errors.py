"""One base for the fleet's errors, as aiokafka's errors carry `retriable`: every error says what went
wrong (`code`, a stable name: an `ErrorCode` value where the wire has one), a human `message`, and
whether trying again can succeed (`retriable`)."""

from __future__ import annotations

from typing import ClassVar

from contracts.messages import ErrorCode


class FleetError(Exception):
    """Base of every error the fleet raises on purpose: decode and validation failures, the client's
    answers and timeouts, a dead engine, a broker that will not start."""

    default_code: ClassVar[str] = ErrorCode.INTERNAL.value
    default_retriable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None, retriable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code: str = self.default_code if code is None else code
        if retriable is None:
            wire = ErrorCode._value2member_map_.get(self.code)
            retriable = wire.retriable if isinstance(wire, ErrorCode) else self.default_retriable
        self.retriable: bool = retriable
