"""Every error the fleet raises on purpose shares one base with `code`, `message` and `retriable`."""

from __future__ import annotations

import asyncio

import pytest

from contracts.codec import Codec, ContentType, DecodeFailure
from contracts.errors import FleetError
from contracts.messages import Error, ErrorCode
from contracts.validation import InvalidRequest
from fleet.broker import BrokerError
from fleet.client import FleetTimeout, OverloadedError, RequestCancelled, error_for
from worker.engine.api import EngineDied


def test_decode_failures_carry_the_wire_code() -> None:
    with pytest.raises(DecodeFailure) as info:
        Codec().decode_request(b"{not json", ContentType.JSON)
    err = info.value
    assert isinstance(err, FleetError)
    assert err.code is ErrorCode.INVALID_ENCODING and not err.retriable and err.message


def test_retriable_follows_the_wire_code_unless_said() -> None:
    assert InvalidRequest(ErrorCode.OVERLOADED, "later").retriable
    assert not InvalidRequest(ErrorCode.INVALID_REQUEST, "no").retriable
    assert FleetError("x", code="not-a-wire-code").retriable is False
    assert FleetError("x", code=ErrorCode.INVALID_REQUEST.value, retriable=True).retriable


def test_client_errors_are_fleet_errors_and_do_not_shadow_asyncio() -> None:
    overloaded = error_for(Error(id="r", code=ErrorCode.OVERLOADED, message="busy", retriable=True))
    cancelled = error_for(Error(id="r", code=ErrorCode.CANCELLED, message="by you", retriable=False))
    assert isinstance(overloaded, OverloadedError) and overloaded.retriable and overloaded.code is ErrorCode.OVERLOADED
    assert isinstance(cancelled, RequestCancelled) and not isinstance(cancelled, asyncio.CancelledError)
    timeout = FleetTimeout("no answer")
    assert isinstance(timeout, TimeoutError) and timeout.retriable and timeout.code == "timeout"


def test_process_level_errors_share_the_base() -> None:
    died = EngineDied("engine process exited with code -9")
    assert isinstance(died, FleetError) and died.code == "engine_died" and died.retriable
    broker = BrokerError("did not start")
    assert isinstance(broker, FleetError) and broker.code == "broker" and not broker.retriable
