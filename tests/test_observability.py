"""Issue 25 on a running fleet: a real router and a real worker process (simulated engine) against the Tansu broker,
metrics on, scraped over HTTP after known traffic. Names, label sets and counts must equal what was sent; the
probes answer over HTTP; every usage record carries the latency its `done` event reported."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.codec import Codec
from contracts.messages import Done, UsageRecord
from fleet.broker import free_port
from fleet.client import FleetClient
from fleet.kafka import ensure_topics, fleet_topics
from router.cost import read_usage
from router.pipeline import build_pipeline
from router.views import Views
from tests.fixtures_kafka import FleetProcs, wait_ready, write_config

PREFIX = "llm_fleet:"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""  # not listening yet


def scrape(port: int) -> Samples:
    status, body = get(port, "/metrics")
    assert status == 200, body[:500]
    out: Samples = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(s: Samples, name: str, **labels: str) -> float:
    return sum(v for ls, v in s.get(name, []) if all(ls.get(k) == x for k, x in labels.items()))


async def until(what: str, check: Callable[[], bool], fleet: FleetProcs, timeout_s: float = 60) -> None:
    """Wait for a condition (never a fixed sleep), failing with the processes' logs when it does not come."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        fleet.check_alive()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}\n{fleet.log(n)[-2000:]}" for n in fleet.procs)
            raise AssertionError(f"{what}: not within {timeout_s} s\n{logs}")
        await asyncio.sleep(0.2)


@dataclass
class ObservedFleet:
    fleet: FleetProcs
    router_port: int
    worker_port: int


@pytest.fixture(scope="module")
async def observed(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ObservedFleet]:
    d = tmp_path_factory.mktemp("obsfleet")
    cfg = write_config(
        d / "fleet.toml",
        [{"name": "obs-a", "path": "none", "engine": "simulated", "simulated_tokens_per_s": 500.0}],
        prefix="obs",
        tiers=[("simple", "obs-a", float("inf"))],
        extra="[metrics]\nenabled = true",
    )
    fleet = FleetProcs(cfg, broker, d)
    await ensure_topics(fleet.settings, fleet_topics(fleet.settings))
    ports = ObservedFleet(fleet, free_port(), free_port())
    fleet.start_router(env={"FLEET_METRICS_PORT": str(ports.router_port)})
    fleet.start_worker("obs-a", "worker-obs-a", env={"FLEET_METRICS_PORT": str(ports.worker_port)})
    try:
        await wait_ready(fleet, ["obs-a"])
        yield ports
    finally:
        fleet.stop_all()


async def test_probes_answer_over_http(observed: ObservedFleet) -> None:
    for port in (observed.router_port, observed.worker_port):
        await until(f"/readyz on {port}", lambda p=port: get(p, "/readyz")[0] == 200, observed.fleet)
        status, body = get(port, "/livez")
        assert status == 200 and json.loads(body)["live"] is True
        assert get(port, "/health/ready")[0] == 200
    body = json.loads(get(observed.worker_port, "/readyz")[1])
    assert body["ready"] is True and body["worker"].startswith("obs-a-")
    assert json.loads(get(observed.router_port, "/readyz")[1])["breakers"] == {"obs-a": "closed"}


async def test_a_scrape_of_router_and_worker_equals_the_traffic_sent(observed: ObservedFleet) -> None:
    fleet = observed.fleet
    before_w, before_r = scrape(observed.worker_port), scrape(observed.router_port)
    n_named, n_auto = 6, 4
    async with FleetClient(fleet.settings) as c:
        streams = [c.generate(f"tell me {i}", model="obs-a", max_tokens=3 + i, timeout_s=60) for i in range(n_named)]
        streams += [c.generate(f"auto {i}", model="auto", max_tokens=4, timeout_s=60) for i in range(n_auto)]
        done: list[Done] = list(await asyncio.gather(*streams))
    n = n_named + n_auto

    def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    w: Samples = {}

    def worker_counted() -> bool:
        nonlocal w
        w = scrape(observed.worker_port)
        return delta(w, before_w, f"{PREFIX}request_success_total") >= n

    await until("the worker's finished-request counter", worker_counted, fleet)
    labels = {"model_name": "obs-a", "quantization": "none"}
    assert delta(w, before_w, f"{PREFIX}request_success_total", finished_reason="length", **labels) == n
    assert delta(w, before_w, f"{PREFIX}generation_tokens_total") == sum(d.usage.completion_tokens for d in done)
    assert delta(w, before_w, f"{PREFIX}prompt_tokens_total") == sum(d.usage.prompt_tokens for d in done)
    for h in (
        "time_to_first_token_seconds",
        "e2e_request_latency_seconds",
        "request_queue_time_seconds",
        "request_time_per_output_token_seconds",
        "request_generation_tokens",
    ):
        assert delta(w, before_w, f"{PREFIX}{h}_count", **labels) == n, h
    assert delta(w, before_w, f"{PREFIX}tenant_requests_total", tenant="default", tier="simple") == n_auto
    assert delta(w, before_w, f"{PREFIX}tenant_requests_total", tenant="default", tier="") == n_named
    worker_id = w[f"{PREFIX}time_to_first_token_seconds_count"][0][0]["worker_id"]
    for name, samples in w.items():  # every fleet series names the model, its quantization and the worker
        if name.startswith(PREFIX):
            for ls, _ in samples:
                assert ls["model_name"] == "obs-a" and ls["quantization"] == "none" and ls["worker_id"] == worker_id
    assert total(w, f"{PREFIX}num_requests_running", **labels) >= 0  # the status loop has read the engine
    assert "process_resident_memory_bytes" in w

    r = scrape(observed.router_port)
    assert delta(r, before_r, f"{PREFIX}router_forwarded_total") == n
    assert delta(r, before_r, f"{PREFIX}router_verdicts_total", code="forward") == n
    stages = {st.name for st in build_pipeline(fleet.settings, Views.from_settings(fleet.settings), Codec())}
    assert {ls["stage"] for ls, _ in r[f"{PREFIX}router_verdicts_total"]} <= stages | {"pipeline"}
    assert total(r, f"{PREFIX}router_breaker_state", model_name="obs-a", state="closed") == 1
    assert total(r, f"{PREFIX}router_breaker_state", model_name="obs-a", state="open") == 0
    assert total(r, f"{PREFIX}router_live_workers", model_name="obs-a") == 1
    assert {ls["lane"] for ls, _ in r[f"{PREFIX}router_model_backlog"]} == {"interactive"}

    # the usage records carry the latency each `done` reported (item 2), on the real run
    usage: dict[str, UsageRecord] = {}

    async def all_usage() -> bool:
        usage.update({u.id: u for u in await read_usage(fleet.settings) if u.id in {d.id for d in done}})
        return len(usage) == n

    deadline = time.monotonic() + 60
    while not await all_usage():
        assert time.monotonic() < deadline, f"usage records: {len(usage)} of {n}"
        await asyncio.sleep(0.2)
    for d in done:
        u = usage[d.id]
        t = d.timings
        assert (u.queue_ms, u.ttft_ms, u.tpot_ms, u.total_ms) == (t.queue_ms, t.ttft_ms, t.tpot_ms, t.total_ms)
        assert 0 <= t.queue_ms <= t.ttft_ms <= t.total_ms


def test_metrics_stay_off_unless_enabled(tmp_path: Path) -> None:
    from fleet.settings import load_settings

    assert load_settings(env={}).metrics.enabled is False
    on = load_settings(env={"FLEET_METRICS_ENABLED": "true", "FLEET_METRICS_PORT": "9500"})
    assert on.metrics.enabled and on.metrics.port == 9500 and on.metrics.prefix == PREFIX


MONITORING = Path(__file__).resolve().parents[1] / "k8s" / "monitoring"
# what the Strimzi Kafka Exporter exports (the rules and the dashboard read its lag too)
KAFKA_EXPORTER = {"kafka_consumergroup_lag", "kafka_consumergroup_members", "kafka_topic_partition_current_offset"}


def exported(*scrapes: str) -> set[str]:
    """Every series name a scrape can carry, from the families' names (a family with no sample yet counts)."""
    names: set[str] = set()
    for text in scrapes:
        for fam in text_string_to_metric_families(text):
            names |= {fam.name + s for s in ("", "_total", "_bucket", "_sum", "_count")}
    return names


def monitoring_exprs() -> list[str]:
    import yaml

    exprs = [
        r["expr"]
        for path in MONITORING.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "PrometheusRule"
        for g in doc["spec"]["groups"]
        for r in g["rules"]
    ]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs


async def test_dashboard_and_alerts_name_only_metrics_the_fleet_exports(observed: ObservedFleet) -> None:
    import re

    await until("/readyz", lambda: get(observed.worker_port, "/readyz")[0] == 200, observed.fleet)
    names = exported(*(get(p, "/metrics")[1].decode() for p in (observed.router_port, observed.worker_port)))
    for expr in monitoring_exprs():
        for name in re.findall(r"\b(llm_fleet:[A-Za-z_][A-Za-z0-9_]*|kafka_[a-z_]+)", expr):
            assert name in names or name in KAFKA_EXPORTER, f"{name} (in {expr!r}) is not exported"


def prometheus_config(path: Path, targets: list[int]) -> Path:
    path.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: fleet\n"
        "    static_configs:\n      - targets: [" + ", ".join(f"'127.0.0.1:{p}'" for p in targets) + "]\n"
    )
    return path


async def test_a_real_prometheus_scrapes_the_counts_sent(observed: ObservedFleet, tmp_path: Path) -> None:
    """Item 5: Prometheus (Debian's package) scrapes the running fleet; its HTTP API returns the counts sent, and
    every query of the dashboard evaluates."""
    import shutil
    import subprocess
    import urllib.parse

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (apt-get install prometheus; make test does so as root)")
    port = free_port()
    cfg = prometheus_config(tmp_path / "prometheus.yml", [observed.router_port, observed.worker_port])
    log = (tmp_path / "prometheus.log").open("wb")
    args = [f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    args.append(f"--web.listen-address=127.0.0.1:{port}")
    prom = await asyncio.create_subprocess_exec(binary, *args, stdout=log, stderr=subprocess.STDOUT)

    def query(q: str) -> list[dict[str, object]]:
        status, body = get(port, "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        if status in (0, 503):  # not listening yet, or still starting up
            return []
        assert status == 200, body[:300]
        data = json.loads(body)["data"]
        return data["result"]  # type: ignore[no-any-return]

    def value(q: str) -> float | None:
        r = query(q)
        return float(r[0]["value"][1]) if r else None  # type: ignore[index]

    fleet = observed.fleet
    try:
        await until("prometheus' targets up", lambda: value("sum(up)") == 2.0, fleet)
        truth = f"sum({PREFIX}request_success_total)"

        def settled() -> bool:  # Prometheus' latest samples equal what the worker and the router say now
            w = total(scrape(observed.worker_port), f"{PREFIX}request_success_total")
            r = total(scrape(observed.router_port), f"{PREFIX}router_forwarded_total")
            return value(truth) == w and (value(f"sum({PREFIX}router_forwarded_total)") or 0.0) == r

        await until("prometheus caught up", settled, fleet)
        names = ["request_success_total", "time_to_first_token_seconds_count", "generation_tokens_total"]
        names.append("router_forwarded_total")
        before = {n: value(f"sum({PREFIX}{n})") or 0.0 for n in names}
        n = 5
        async with FleetClient(fleet.settings) as c:
            done = await asyncio.gather(
                *(c.generate(f"prom {i}", model="obs-a", max_tokens=2 + i, timeout_s=60) for i in range(n))
            )
        await until(
            "prometheus scraped the traffic",
            lambda: (value(truth) or 0) - before["request_success_total"] >= n and settled(),
            fleet,
        )
        after = {k: value(f"sum({PREFIX}{k})") or 0.0 for k in names}
        assert after["request_success_total"] - before["request_success_total"] == n
        assert after["time_to_first_token_seconds_count"] - before["time_to_first_token_seconds_count"] == n
        assert after["generation_tokens_total"] - before["generation_tokens_total"] == sum(
            d.usage.completion_tokens for d in done
        )
        assert after["router_forwarded_total"] - before["router_forwarded_total"] == n
        assert query(f'{PREFIX}router_breaker_state{{model_name="obs-a",state="closed"}} == 1')
        for expr in monitoring_exprs():  # every query of the dashboard and the rules evaluates
            q = expr.replace("$__rate_interval", "1m")
            status, body = get(port, "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
            assert status == 200 and json.loads(body)["status"] == "success", (q, body[:300])
    finally:
        prom.terminate()
        await asyncio.wait_for(prom.wait(), 30)
        log.close()
