"""fleet/metrics.py's HTTP server, for real on a free port: the exposition from prometheus_client, and the probes
answering from the process's beat (as Kubernetes' httpGet probes read them: the status code)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from fleet.metrics import Beat, MetricsServer, Probes, buckets_1_2_5, new_registry, serve
from fleet.settings import MetricsSettings

ON = MetricsSettings(enabled=True, host="127.0.0.1", port=0)


def get(port: int, path: str) -> tuple[int, dict[str, object] | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            status, body = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    return status, json.loads(body) if body.startswith("{") else body


def test_metrics_and_probes_over_http() -> None:
    registry = new_registry()
    Counter("test_fleet:things", "Things.", registry=registry).inc(3)
    probes = Probes(ON)
    probes.phase("loading the model")
    with MetricsServer(ON, registry, probes) as srv:
        status, body = get(srv.port, "/metrics")
        assert status == 200 and isinstance(body, str)
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"test_fleet:things", "process_resident_memory_bytes", "python_info"} <= names
        assert "test_fleet:things_created" not in body  # no _created series
        assert get(srv.port, "/livez") == (503, {"live": False, "why": "loading the model"})
        assert get(srv.port, "/readyz")[0] == 503
        probes.beat(ready=False, why="intake idle 12.0 s")
        assert get(srv.port, "/livez")[0] == 200
        status, ready = get(srv.port, "/readyz")
        assert status == 503 and isinstance(ready, dict) and ready["why"] == "intake idle 12.0 s"
        probes.beat(ready=True, worker="w-1")
        status, ready = get(srv.port, "/health/ready")
        assert status == 200 and isinstance(ready, dict) and ready["worker"] == "w-1"


def test_names_keep_their_colon_whatever_the_scraper_accepts() -> None:
    """Prometheus asks for OpenMetrics first; prometheus_client's encoder for it would write `test_fleet_things`."""
    registry = new_registry()
    Counter("test_fleet:things", "Things.", registry=registry).inc()
    accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,*/*;q=0.1"
    with MetricsServer(ON, registry, Probes(ON)) as srv:
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/metrics", headers={"Accept": accept})
        with urllib.request.urlopen(req, timeout=5) as r:
            body = r.read().decode()
    samples = {s.name for f in text_string_to_metric_families(body) for s in f.samples}
    assert "test_fleet:things_total" in samples


def test_a_stale_beat_fails_both_probes_and_an_unreadable_one_answers_503() -> None:
    old = Probes(ON, read=lambda: Beat(time.monotonic() - ON.live_max_age_s - 1, True, "ok"))
    assert old.live()[0] is False and old.ready()[0] is False
    recent = Probes(ON, read=lambda: Beat(time.monotonic() - ON.ready_max_age_s - 1, True, "ok"))
    assert recent.live()[0] is True and recent.ready()[0] is False  # stale for readiness, not yet for liveness

    def broken() -> Beat:
        raise AttributeError("'RouterService' object has no attribute 'views'")

    ok, body = Probes(ON, read=broken).ready()
    assert not ok and "health unreadable" in str(body["why"])


def test_off_means_nothing_listens() -> None:
    assert serve(MetricsSettings(enabled=False), new_registry(), Probes(ON)) is None


def test_token_buckets_are_vllms() -> None:
    assert buckets_1_2_5(100) == [1, 2, 5, 10, 20, 50, 100]


def test_fleet_up_gives_each_child_its_own_port() -> None:
    from fleet.settings import Settings
    from fleet.up import metrics_ports

    assert metrics_ports(Settings()) == {}  # off: nothing listens
    on = Settings(metrics=MetricsSettings(enabled=True, port=9400))
    assert metrics_ports(on) == {
        "router": {"FLEET_METRICS_PORT": "9400"},
        "small": {"FLEET_METRICS_PORT": "9401"},
        "large": {"FLEET_METRICS_PORT": "9402"},
    }
    anywhere = Settings(metrics=MetricsSettings(enabled=True, port=0))
    assert {e["FLEET_METRICS_PORT"] for e in metrics_ports(anywhere).values()} == {"0"}
