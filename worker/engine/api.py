"""The engine interface the worker's engine driver (worker/driver.py) drives.

The worker's async loops own Kafka; the engine owns compute. The driver calls
`add_request`/`abort_request` from the event-loop thread at any time (they
only enqueue, so they are thread-safe) and runs `step()` in one worker thread,
one call at a time. Each step is one scheduler iteration: requests join the
running batch between steps and leave it the step they finish.

Tokens in, tokens out: tokenisation, chat templates, detokenisation and stop
strings live in the worker's input and output processing; when a stop string
appears the driver calls `abort_request(..., FinishKind.ABANDONED)` to free the
slot and answers the request as stopped itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from contracts.errors import FleetError


class FinishKind(enum.StrEnum):
    STOP = "stop"  # end-of-sequence token (or a stop string, via abort_request)
    LENGTH = "length"  # max_tokens generated, or the model's context is full
    CANCELLED = "cancelled"  # abort_request(..., CANCELLED)
    EXPIRED = "expired"  # the deadline passed (checked by the engine every step)
    ABANDONED = "abandoned"  # the worker gave the request up (rebalance); no terminal event is sent


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None  # a seeded request samples the same tokens whatever else is in the batch

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(slots=True)
class EngineRequest:
    request_id: str  # unique among the requests the engine holds
    prompt_token_ids: list[int]
    params: SamplingParams
    deadline_s: float | None = None  # absolute, time.time() seconds; None = no deadline
    arrival_s: float = 0.0  # time.time() when the worker took it (scheduling order, queue time)
    priority: int = 0  # 0 interactive, 1 batch: a waiting request goes ahead of every waiting one of a later class
    # a resumed request: the last this many prompt tokens are its own output so far (the simulated engine reads it;
    # a model's greedy continuation is the same from the longer prefill)
    resumed_tokens: int = 0


@dataclass(slots=True)
class StepOutput:
    """What one step produced for one request."""

    request_id: str
    new_token_ids: list[int]  # may be empty (e.g. finished by abort) or several (speculation)
    finished: FinishKind | None = None
    num_prompt_tokens: int = 0
    spec_draft_tokens: int = 0  # cumulative for the request
    spec_accepted_tokens: int = 0  # cumulative for the request
    prefill_ms: float = 0.0  # set on the step that ran the request's prefill


@dataclass(slots=True)
class EngineStats:
    running: int
    waiting: int
    max_running: int
    weights_bytes: int = 0
    kv_cache_bytes: int = 0  # allocated now
    kv_budget_bytes: int = 0  # the most the KV cache may take
    spec_draft_tokens: int = 0  # aggregate over the engine's life
    spec_accepted_tokens: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def spec_acceptance(self) -> float | None:
        return acceptance(self.spec_accepted_tokens, self.spec_draft_tokens)


def acceptance(accepted: int, proposed: int) -> float | None:
    """Speculation's acceptance rate, rounded for reports; None when nothing was proposed."""
    return round(accepted / proposed, 4) if proposed else None


def check_prompt_len(n: int, max_model_len: int) -> None:
    """An engine takes prompts of 1 .. max_model_len - 1 tokens (room for at least one new token)."""
    if n == 0 or n >= max_model_len:
        raise ValueError(f"prompt of {n} tokens; this engine takes 1..{max_model_len - 1}")


class EngineDied(FleetError, RuntimeError):
    """The engine can no longer run (its process is gone); the requests it held are lost with it.

    Unlike an ordinary exception from `step()`, retrying in this engine is pointless: the worker
    stops and leaves those requests uncommitted for another worker."""

    default_code = "engine_died"
    default_retriable = True  # for the request: another worker can serve it


@runtime_checkable
class Engine(Protocol):
    simulated: bool  # True for engines that emit timed tokens without a model

    def add_request(self, request: EngineRequest) -> None: ...

    def abort_request(self, request_id: str, reason: FinishKind) -> None:
        """Finish a request at the next step with `reason` (a StepOutput says so); unknown ids are ignored."""

    def step(self) -> list[StepOutput]: ...

    def has_unfinished(self) -> bool: ...

    def stats(self) -> EngineStats: ...

    def close(self) -> None: ...
