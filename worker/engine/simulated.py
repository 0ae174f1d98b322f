"""A simulated engine: timed token emission, no model.

For fleet-scale tests of routing, scaling and failure handling only. Its
numbers must be labelled "simulated" wherever they appear.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

from worker.engine.api import EngineRequest, EngineStats, FinishKind, StepOutput
from worker.engine.scheduler import insert_waiting


class SimulatedEngine:
    simulated = True

    def __init__(
        self,
        *,
        tokens_per_s: float = 100.0,
        max_running: int = 32,
        vocab_size: int = 256,
        eos_token_id: int | None = None,
        fail_on: bytes | None = None,
        exit_on: bytes | None = None,
    ) -> None:
        self._step_s = 1.0 / tokens_per_s  # every running sequence gets one token per step
        self._max_running = max_running
        self._vocab = vocab_size
        self._eos = eos_token_id
        self._fail_on = fail_on  # tests of failure isolation: a step raises while a prompt holding these bytes runs
        # tests of poison across processes: a step ends the whole process (os._exit, no cleanup, like a crash in
        # a kernel) while a prompt holding these bytes runs
        self._exit_on = exit_on
        self._lock = threading.Lock()
        self._inbox: deque[EngineRequest] = deque()
        self._aborts: dict[str, FinishKind] = {}
        self._waiting: deque[EngineRequest] = deque()
        self._running: dict[str, tuple[EngineRequest, int]] = {}

    def add_request(self, request: EngineRequest) -> None:
        with self._lock:
            self._inbox.append(request)

    def abort_request(self, request_id: str, reason: FinishKind) -> None:
        with self._lock:
            self._aborts[request_id] = reason

    def has_unfinished(self) -> bool:
        with self._lock:
            return bool(self._inbox or self._waiting or self._running or self._aborts)

    def stats(self) -> EngineStats:
        return EngineStats(running=len(self._running), waiting=len(self._waiting), max_running=self._max_running)

    def close(self) -> None:
        pass

    def step(self) -> list[StepOutput]:
        with self._lock:
            for req in self._inbox:
                insert_waiting(self._waiting, req, lambda r: r.priority)
            self._inbox.clear()
            aborts, self._aborts = self._aborts, {}
        out: list[StepOutput] = []
        for rid, reason in aborts.items():
            if rid in self._running:
                req, _ = self._running.pop(rid)
                out.append(StepOutput(rid, [], reason, len(req.prompt_token_ids)))
            else:
                for req in list(self._waiting):
                    if req.request_id == rid:
                        self._waiting.remove(req)
                        out.append(StepOutput(rid, [], reason, len(req.prompt_token_ids)))
        while self._waiting and len(self._running) < self._max_running:
            req = self._waiting.popleft()
            self._running[req.request_id] = (req, 0)
        if self._fail_on is not None:
            for req, _ in self._running.values():
                if self._fail_on in bytes(i % 256 for i in req.prompt_token_ids):
                    raise RuntimeError(f"simulated failure: request {req.request_id} holds the fail marker")
        if self._exit_on is not None:
            for req, _ in self._running.values():
                if self._exit_on in bytes(i % 256 for i in req.prompt_token_ids):
                    os._exit(70)
        if self._running:
            time.sleep(self._step_s)
        now = time.time()
        for rid, (req, n) in list(self._running.items()):
            if req.deadline_s is not None and now > req.deadline_s:
                del self._running[rid]
                out.append(StepOutput(rid, [], FinishKind.EXPIRED, len(req.prompt_token_ids)))
                continue
            # deterministic "text": the prompt's tokens, cycled (a resumed request's own output excluded)
            own = req.prompt_token_ids[: len(req.prompt_token_ids) - req.resumed_tokens]
            prompt = own or [0]
            tok = prompt[(n + req.resumed_tokens) % len(prompt)] % self._vocab
            n += 1
            finished = FinishKind.LENGTH if n >= req.params.max_tokens else None
            if finished:
                del self._running[rid]
            else:
                self._running[rid] = (req, n)
            out.append(StepOutput(rid, [tok], finished, len(req.prompt_token_ids)))
        return out


class ByteTokenizer:
    """The simulated engine's tokenizer: one token per UTF-8 byte. No model, no vocabulary file."""

    chat_template = "simulated"
    eos_token_id = None

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": list(text.encode("utf-8"))}

    def apply_chat_template(self, messages: list[dict[str, str]], **_: object) -> list[int]:
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(i % 256 for i in ids).decode("utf-8", "replace")
