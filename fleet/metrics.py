"""Prometheus `/metrics` and the health probes (`/livez`, `/readyz`) over HTTP, for the router and the worker.

One small WSGI app served by the standard library's `wsgiref` on threads (`MetricsServer`): prometheus_client
renders the registry (`make_wsgi_app`), the probes answer from a `Probes` the process keeps current. Why a
thread and not the event loop: a scrape renders every series (a few milliseconds of Python for a worker) and a
probe must answer while the loop is busy or stuck (that is what a liveness probe is for), so neither runs on
the loop that serves Kafka. What a scrape reads is plain data the loop already keeps (ints, dicts copied at
once under the GIL) or prometheus_client's own thread-safe metrics: the loop never waits for a scrape.

The names follow vLLM's (`vllm:time_to_first_token_seconds`, ...) with the prefix of `[metrics] prefix`
(default `llm_fleet:`) in place of `vllm:`; docs/observability.md lists them.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
)

from fleet.settings import MetricsSettings

log = structlog.get_logger(__name__)

# HTTP paths of the probes; the Kubernetes-style short ones and the longer aliases some charts expect
LIVE_PATHS = ("/livez", "/health/live")
READY_PATHS = ("/readyz", "/health/ready")

# Buckets, as vLLM's (vllm/v1/metrics/loggers.py), so its dashboards' quantiles read the same
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
REQUEST_LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)


def buckets_1_2_5(max_value: int) -> list[float]:
    """1, 2, 5, 10, 20, 50, ... up to `max_value` (vLLM's token-count buckets)."""
    out: list[float] = []
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale > max_value:
                return out
            out.append(float(m * scale))
        scale *= 10


@dataclass
class Beat:
    """What a process says about itself, as the health file holds it (`fleet.health.beat`): when its loop last
    turned (monotonic seconds; None: not yet), whether it is ready, and why not."""

    at_s: float | None = None
    ready: bool = False
    why: str = "starting"
    detail: dict[str, Any] = field(default_factory=dict)


class Probes:
    """Liveness and readiness from a `Beat`. A process either calls `beat()` from its loop (the worker), or
    gives a function that reads one from the running service (the router: router/metrics.py)."""

    def __init__(self, settings: MetricsSettings, read: Callable[[], Beat] | None = None) -> None:
        self._settings = settings
        self._beat = Beat()
        self._read = read

    def beat(self, *, ready: bool, why: str = "ok", **detail: Any) -> None:
        self._beat = Beat(time.monotonic(), ready, why, detail)  # one reference swap: a probe reads a whole beat

    def phase(self, why: str) -> None:
        """Not beating yet (loading the model): neither live nor ready, as with no health file (a startup probe
        gives the process its time)."""
        self._beat = Beat(None, False, why)

    def current(self) -> Beat:
        if self._read is not None:
            try:
                return self._read()
            except Exception as exc:  # a probe answers whatever the service's state: never a 500 with a trace
                return Beat(None, False, f"health unreadable: {exc!r}"[:200])
        return self._beat

    def live(self) -> tuple[bool, dict[str, Any]]:
        b = self.current()
        if b.at_s is None:
            return False, {"live": False, "why": b.why}
        age = time.monotonic() - b.at_s
        ok = age <= self._settings.live_max_age_s
        why = "ok" if ok else f"stale: last beat {age:.1f} s ago (limit {self._settings.live_max_age_s} s)"
        return ok, {"live": ok, "age_s": round(age, 3), "why": why}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        b = self.current()
        if b.at_s is None:
            return False, {"ready": False, "why": b.why}
        age = time.monotonic() - b.at_s
        ok = b.ready and age <= self._settings.ready_max_age_s
        why = b.why if not b.ready else ("ok" if ok else f"stale: last beat {age:.1f} s ago")
        return ok, {"ready": ok, "age_s": round(age, 3), "why": why, **b.detail}


def new_registry() -> CollectorRegistry:
    """A registry for one process: its own metrics, plus the process's CPU, memory and file descriptors and the
    Python version (prometheus_client's `process_*` and `python_info`). No `*_created` series: they double what a
    scrape carries and no dashboard of the fleet reads them."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the process open at exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape and probe on stderr would drown the JSON logs


def app(registry: CollectorRegistry, probes: Probes) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: the probes by path, the registry's exposition (prometheus_client) for the rest."""
    metrics = make_wsgi_app(registry)

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in LIVE_PATHS or path in READY_PATHS:
            ok, body = probes.live() if path in LIVE_PATHS else probes.ready()
            data = json.dumps(body, default=str).encode()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        # the text format 0.0.4 whatever the scraper accepts: prometheus_client 0.26's OpenMetrics encoder writes the
        # samples of `llm_fleet:x` as `llm_fleet_x` (it escapes them as label names, with no colon) under a TYPE line
        # that keeps the colon, so Prometheus stored every series under another name than vLLM's dashboards query
        environ = {**environ, "HTTP_ACCEPT": "text/plain; version=0.0.4"}
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return handle


class MetricsServer:
    """`with MetricsServer(settings, registry, probes) as srv:` serves on `srv.port` until the block ends."""

    def __init__(self, settings: MetricsSettings, registry: CollectorRegistry, probes: Probes) -> None:
        self._server = make_server(
            settings.host, settings.port, app(registry, probes), _ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics.serving", port=self.port, paths=["/metrics", *LIVE_PATHS[:1], *READY_PATHS[:1]])
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(settings: MetricsSettings, registry: CollectorRegistry, probes: Probes) -> MetricsServer | None:
    """A started server when metrics are on, else None (nothing listens, nothing is counted)."""
    if not settings.enabled:
        return None
    return MetricsServer(settings, registry, probes).start()
