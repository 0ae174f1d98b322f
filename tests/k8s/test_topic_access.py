"""fleet/topic_access.py against the code it describes, and its ACL arithmetic.

The real router and worker run in process against the session's real broker, through recording subclasses of
aiokafka's clients (tests/k8s/recording_kafka.py): every topic and group they read, write or look at is noted
in ACL terms, and must be exactly what topic_access declares for those settings: nothing used that is not
declared (a KafkaUser derived from it would refuse the call: the router's health feed on the DLQ never
started), and nothing declared that the run did not use (a grant nobody needs). The broker has no ACLs: the
recording is the check. The scripted traffic takes every path that touches a topic: both lanes of every model,
a refusal with a reply and a DLQ copy, and, with a tenant that has limits, the move to its owner partition and
the counters' snapshots. Each run has its own topic prefix (and so its own groups) on the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.topics import Headers
from fleet import topic_access as ta
from fleet.kafka import ensure_topics, fleet_topics, read_to_end
from fleet.settings import (
    EngineKind,
    KafkaSettings,
    LatencySettings,
    ModelSettings,
    RouterSettings,
    Settings,
    TenantSettings,
    WorkerSettings,
)
from fleet.tenants import mint_key
from fleet.topic_access import Access, Op, Pattern, Resource
from tests.k8s.recording_kafka import Recorder, Use, install

JSON = (Headers.CONTENT_TYPE, b"application/json")
Record = tuple[str, bytes, bytes | None, list[tuple[str, bytes]], int | None]  # topic, value, key, headers, partition
RUN_TIMEOUT_S = 25.0  # the dev broker's group join takes a few seconds; everything else follows within one


def _kafka(broker: str) -> KafkaSettings:
    """The session broker, under a topic prefix (and so group names) of this run's own."""
    return KafkaSettings(
        bootstrap_servers=broker,
        topic_prefix=f"acl{uuid.uuid4().hex[:6]}",
        intake_partitions=2,
        model_partitions=2,
        reply_partitions=1,
    )


# as tests/fixtures_kafka.py write_config: a quick group join on the dev broker, frequent heartbeats
LATENCY = LatencySettings(
    session_timeout_ms=6000, heartbeat_interval_ms=500, rebalance_timeout_ms=3000, status_interval_ms=300
)


def _matches(a: Access, use: Use) -> bool:
    resource, name, op = use
    hit = name == a.name if a.pattern is Pattern.LITERAL else name.startswith(a.name)
    return resource is a.resource and op is a.op and hit


def _unused(declared: frozenset[Access], recorder: Recorder) -> list[Access]:
    used = list(recorder.used)
    return [a for a in declared if not any(_matches(a, u) for u in used)]


def _compare(
    declared: frozenset[Access], recorder: Recorder, who: str, exempt: frozenset[Access] = frozenset()
) -> None:
    """Both ways: everything used is declared; everything declared (but `exempt`) was used."""
    assert not recorder.unrecorded, f"{who} built Kafka clients the recording does not see: {recorder.unrecorded}"
    undeclared = sorted(
        f"{op} {r} {n!r} (by {by})" for (r, n, op), by in recorder.used.items() if not ta.covered(declared, r, n, op)
    )
    assert not undeclared, f"{who} does what fleet/topic_access.py does not declare: {undeclared}"
    unused = sorted(f"{a.op} {a.resource} {a.name!r} ({a.why})" for a in _unused(declared - exempt, recorder))
    assert not unused, f"fleet/topic_access.py declares for {who} what the run never did: {unused}"


async def _run(service: Any, until: Callable[[], bool], timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Run the service until `until()` holds (at most `timeout_s`), then stop it and wait for its end."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not until() and not task.done() and loop.time() < deadline:  # noqa: ASYNC110 - a bounded poll
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 30)


async def _setup(settings: Settings, replies: list[str], records: list[Record]) -> None:
    """The run's topics (the fleet's and its reply topics) and its input, written before the service starts
    (its groups are new: they read from the start)."""
    await ensure_topics(settings, {**fleet_topics(settings), **dict.fromkeys(replies, 1)})
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=0)
    await producer.start()
    try:
        for topic, value, key, headers, partition in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers, partition=partition)
    finally:
        await producer.stop()


def _request(rid: str, reply_to: str, model: str, **extra: Any) -> bytes:
    body = {"id": rid, "reply_to": reply_to, "prompt": "hi", "model": model, "max_tokens": 4, **extra}
    return json.dumps(body).encode()


# -- the recording ---------------------------------------------------------------------------------------------
@pytest.mark.unit
async def test_a_client_built_past_the_recording_is_refused_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    install(monkeypatch, recorder)
    # neither starts: the refusal comes before any connection is tried
    for client in (
        AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1"),
        AIOKafkaProducer(bootstrap_servers="127.0.0.1:1"),
    ):
        try:
            with pytest.raises(AssertionError, match="recording does not see"):
                await client.start()
        finally:
            await client.stop()
    assert recorder.unrecorded == ["AIOKafkaConsumer", "AIOKafkaProducer"]


# -- the router ------------------------------------------------------------------------------------------------
def _router_settings(broker: str, tenant_key_hash: str | None) -> Settings:
    tenants = (
        [TenantSettings(name="acme", api_key_hashes=[tenant_key_hash], requests_per_s=1000.0)]
        if tenant_key_hash
        else []
    )
    models = [
        ModelSettings(name=m, path="demo:small", engine=EngineKind.SIMULATED, max_running=4) for m in ("small", "large")
    ]
    kafka = _kafka(broker)
    if tenants:  # records signed, so a tenant's cancel through its intake is relayed (router/stages/cancel.py)
        kafka = msgspec.structs.replace(kafka, record_key="topic-access-test-key-" + uuid.uuid4().hex)
    return Settings(
        kafka=kafka,
        latency=LATENCY,
        models=models,
        tenants=tenants,
        router=RouterSettings(tenant_state_interval_ms=50),
    )


@pytest.mark.integration
@pytest.mark.parametrize("tenants", ["none", "one with limits"])
async def test_the_router_touches_exactly_what_topic_access_declares(
    monkeypatch: pytest.MonkeyPatch, broker: str, tenants: str
) -> None:
    from router.service import RouterService

    key, key_hash = mint_key()
    settings = _router_settings(broker, str(key_hash) if tenants != "none" else None)
    t = settings.kafka.topics
    reply = f"{t.replies}.acme.c1" if settings.tenants else f"{t.replies}.c1"
    headers = [JSON] + ([(Headers.API_KEY, key.encode())] if settings.tenants else [])
    bodies = [
        _request(f"r-{m}-{prio}", reply, m, priority=prio)
        for m in settings.model_names
        for prio in ("interactive", "batch")
    ]
    bodies.append(_request("r-bad", reply, "small", max_tokens=-1))  # refused: an error event and a DLQ copy
    if settings.tenants:  # a cancel through the intake: relayed to the control topic
        bodies.append(json.dumps({"type": "cancel", "id": "r-small-batch"}).encode())
    records: list[Record] = [
        (t.requests, body, None, headers, i % settings.kafka.intake_partitions) for i, body in enumerate(bodies)
    ]
    await _setup(settings, [reply], records)

    recorder = Recorder()
    install(monkeypatch, recorder)
    declared = ta.router(settings)
    # The router's tenant rights are declared whatever tenants the settings list (tenants are added while the
    # fleet runs, with their intake topic alone); a run without tenants has no tenant topic to touch, so it is
    # not asked to have used them. The run with a tenant that has limits must use every one.
    exempt = frozenset() if settings.tenants else ta.router_tenants(settings)
    await _run(RouterService(settings), lambda: not _unused(declared - exempt, recorder))

    _compare(declared, recorder, "the router", exempt)
    lanes = {f(m) for m in settings.model_names for f in (t.model, t.model_batch)}
    forwarded = {r.topic for r in await read_to_end(settings, sorted(lanes))}
    assert forwarded == lanes, "every lane of every model got its request"


# -- the worker ------------------------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("resume", [True, False])
async def test_a_worker_touches_exactly_what_topic_access_declares(
    monkeypatch: pytest.MonkeyPatch, broker: str, tmp_path: Path, resume: bool
) -> None:
    from worker.engine import build_simulated_engine
    from worker.service import WorkerService

    model = ModelSettings(
        name="small", path="demo:small", engine=EngineKind.SIMULATED, simulated_tokens_per_s=2000.0, max_running=4
    )
    other = ModelSettings(name="large", path="demo:small", engine=EngineKind.SIMULATED)
    settings = Settings(
        kafka=_kafka(broker),
        latency=LATENCY,
        models=[model, other],
        worker=WorkerSettings(drain_grace_s=5.0, resume=resume),
    )
    t = settings.kafka.topics
    reply = f"{t.replies}.c1"
    truncated = b'{"id": "w-3", "reply_to": "' + reply.encode() + b'", "prompt": '  # poison: to the DLQ
    await _setup(
        settings,
        [reply],
        [
            (t.model("small"), _request("w-1", reply, "small"), b"w-1", [JSON], None),
            (t.model_batch("small"), _request("w-2", reply, "small", priority="batch"), b"w-2", [JSON], None),
            (t.model("small"), truncated, b"w-3", [JSON], None),
        ],
    )

    recorder = Recorder()
    install(monkeypatch, recorder)
    engine, tokenizer, max_model_len = build_simulated_engine(model, tmp_path)
    declared = ta.worker(settings, "small")
    await _run(
        WorkerService(settings, model, engine, tokenizer, max_model_len=max_model_len),
        lambda: not _unused(declared, recorder),
    )

    _compare(declared, recorder, "a worker of model 'small'")
    assert not [n for _, n, _ in recorder.used if "large" in n], "nothing of the other model's"


# -- the declaration and its ACLs ------------------------------------------------------------------------------
@pytest.mark.unit
def test_acls_leave_out_what_another_rule_implies() -> None:
    read = Access(Resource.TOPIC, "llm.a", Op.READ)
    describe = Access(Resource.TOPIC, "llm.a", Op.DESCRIBE)
    under = Access(Resource.TOPIC, "llm.replies.x.", Op.WRITE, Pattern.PREFIX)
    prefix = Access(Resource.TOPIC, "llm.replies", Op.WRITE, Pattern.PREFIX)
    literal = Access(Resource.TOPIC, "llm.replies", Op.WRITE)
    group = Access(Resource.GROUP, "llm.a", Op.DESCRIBE)
    assert ta.acls([read, describe, under, prefix, literal, group]) == {read.acl, prefix.acl, group.acl}
    assert ta.acls([describe]) == {describe.acl}  # Describe alone stays
    assert ta.acls([under, literal]) == {under.acl, literal.acl}  # a literal never grants a prefix
    assert not prefix.covers(Resource.TOPIC, "llm.replies", Op.READ)
    assert prefix.covers(Resource.TOPIC, "llm.replies.billing", Op.DESCRIBE)
    assert not read.covers(Resource.GROUP, "llm.a", Op.READ)


@pytest.mark.unit
def test_the_router_may_serve_tenants_added_later_with_only_their_topic() -> None:
    plain = Settings()
    t = plain.kafka.topics
    intake = ta.tenant_intake_prefix(plain)
    assert intake == "llm.requests.t." and t.tenant_of_intake(f"{intake}acme") == "acme"
    tenant_acls = {
        ("topic", "prefix", intake, "Read"),
        ("topic", "prefix", intake, "Write"),  # a tenant with limits: moved to its owner partition
        ("topic", "literal", t.tenant_state, "Read"),
        ("topic", "literal", t.tenant_state, "Write"),
        ("topic", "literal", t.control, "Write"),  # a tenant's cancel through its intake, relayed
    }
    assert {a.acl for a in ta.router_tenants(plain)} == tenant_acls
    assert tenant_acls <= ta.acls(ta.router(plain)), "without tenants configured too"
    for name in ("open", "capped", "new-one"):  # every tenant's intake, configured or not
        assert ta.covered(ta.router(plain), Resource.TOPIC, t.tenant_intake(name), Op.READ)
        assert ta.covered(ta.router(plain), Resource.TOPIC, t.tenant_intake(name), Op.WRITE)
    assert not ta.covered(ta.router(plain), Resource.TOPIC, t.requests, Op.WRITE)  # the prefix is the tenants' only

    _, h = mint_key()
    tenants = [
        TenantSettings(name="open", api_key_hashes=[str(h)]),
        TenantSettings(name="capped", daily_tokens=1000, reply_prefixes=["billing.out."]),
    ]
    with_tenants = Settings(tenants=tenants)
    added = {a.acl for a in ta.router(with_tenants)} - {a.acl for a in ta.router(plain)}
    assert added == {("topic", "prefix", "billing.out.", "Write")}, "only a reply prefix outside the namespace"
    assert ta.reply_prefixes(with_tenants) == [t.replies, "billing.out."]  # llm.replies.open. lies under the first


@pytest.mark.unit
def test_each_worker_reads_only_its_own_model() -> None:
    s = Settings()
    t = s.kafka.topics
    small, large = ta.worker(s, "small"), ta.worker(s, "large")
    assert ta.covered(small, Resource.TOPIC, t.model("small"), Op.READ)
    assert not ta.covered(small, Resource.TOPIC, t.model("large"), Op.READ)
    assert not ta.covered(small, Resource.GROUP, t.worker_group("large"), Op.READ)
    assert {a.acl for a in small ^ large} == {
        a.acl for m in ("small", "large") for a in ta.worker(s, m) if m in a.name
    }, "the models' workers differ only in their own lanes and group"
