"""What each service does on Kafka, declared once: the topics it reads and writes and the consumer groups it
joins or looks at, as a function of the settings. Pure: no Kafka I/O.

This is the source the shipped Kafka ACLs are derived from (k8s/base/kafka-users.yaml; tests/k8s compares
them both ways), and tests/k8s/test_topic_access.py runs the real router and worker against a real broker,
through recording subclasses of aiokafka's clients, to check that they touch exactly what this module
declares. A new consumer, producer or lag query goes here in the same change.

The router's rights on tenants (`router_tenants`) do not depend on the tenants configured: tenants come and go
while the fleet runs, and adding one takes its intake topic alone (prefix rights on every tenant's intake).

Operations are Kafka's ACL operations, as the brokers check them:

- Read on a topic: fetch (a consumer, with or without a group); Write on a topic: produce.
- Read on a group: join it, sync, heartbeat, commit (OffsetCommit needs Read on the topic too).
- Describe on a group: fetch its committed offsets (OffsetFetch, with Describe on the topics asked about).
- Describe on a topic: its metadata and end offsets (ListOffsets). Read and Write imply Describe.

Nothing here creates, deletes or alters a topic, and no producer is idempotent or transactional
(fleet/kafka.py: `enable_idempotence=False`), so no Create, IdempotentWrite or TransactionalId rights. A
consumer that meets a batch it cannot decode (fleet/fetch.py) fetches it raw from a topic it already reads
and writes its copy to the DLQ, which both services write anyway.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from fleet.settings import Settings


class Resource(enum.StrEnum):
    TOPIC = "topic"
    GROUP = "group"


class Pattern(enum.StrEnum):
    LITERAL = "literal"  # the name itself
    PREFIX = "prefix"  # every name that starts with it


class Op(enum.StrEnum):
    READ = "Read"
    WRITE = "Write"
    DESCRIBE = "Describe"


ACL = tuple[str, str, str, str]  # (resource type, pattern type, name, operation), as a Strimzi ACL rule reads


@dataclass(frozen=True, slots=True)
class Access:
    """One operation on one resource (or every resource under a prefix); `why` says which code does it."""

    resource: Resource
    name: str
    op: Op
    pattern: Pattern = Pattern.LITERAL
    why: str = field(default="", compare=False)

    def covers(self, resource: Resource, name: str, op: Op) -> bool:
        """Whether this grant allows `op` on the concrete resource `name` (Read and Write imply Describe)."""
        if resource is not self.resource:
            return False
        if not (name == self.name if self.pattern is Pattern.LITERAL else name.startswith(self.name)):
            return False
        return op is self.op or (op is Op.DESCRIBE and self.op in (Op.READ, Op.WRITE))

    def within(self, other: Access) -> bool:
        """Whether `other` grants everything this one does (a literal under a prefix, Describe under Read)."""
        if self.pattern is Pattern.PREFIX and other.pattern is Pattern.LITERAL:
            return False  # a literal never grants a whole prefix
        return other.covers(self.resource, self.name, self.op)

    @property
    def acl(self) -> ACL:
        return (self.resource.value, self.pattern.value, self.name, self.op.value)


def _topic(name: str, op: Op, why: str) -> Access:
    return Access(Resource.TOPIC, name, op, why=why)


def _group(name: str, op: Op, why: str) -> Access:
    return Access(Resource.GROUP, name, op, why=why)


def reply_prefixes(settings: Settings) -> list[str]:
    """Where router and workers write replies: the reply namespace `<prefix>.replies` and each tenant's own
    reply prefixes (those outside the namespace too). Without tenants the router forwards any `reply_to`
    outside the fleet's own topics; the deployment confines replies to these prefixes (k8s: prefix ACLs), so a
    reply anywhere else is recorded undeliverable (worker/outbox.py, router/follow_up.py)."""
    out = [settings.kafka.topics.replies]
    for t in settings.tenants:
        for p in settings.reply_prefixes(t):
            if not any(p.startswith(q) for q in out):
                out.append(p)
    return out


def _reply_writes(settings: Settings, who: str) -> set[Access]:
    return {
        Access(Resource.TOPIC, p, Op.WRITE, Pattern.PREFIX, f"{who}: events to each request's reply_to")
        for p in reply_prefixes(settings)
    }


def tenant_intake_prefix(settings: Settings) -> str:
    """What every tenant's intake topic starts with (`llm.requests.t.`): contracts.topics names them."""
    probe = "x"
    return settings.kafka.topics.tenant_intake(probe).removesuffix(probe)


def router_tenants(settings: Settings) -> frozenset[Access]:
    """The router's part in tenants, declared whatever tenants the settings list: tenants are added while the
    fleet runs (an operator adds one with its KafkaTopic alone), so the rights cannot wait for the settings to
    name them. A run without tenants touches none of these."""
    t = settings.kafka.topics
    intake = tenant_intake_prefix(settings)
    return frozenset(
        {
            Access(Resource.TOPIC, intake, Op.READ, Pattern.PREFIX, "router/service.py: each tenant's own intake"),
            Access(
                Resource.TOPIC,
                intake,
                Op.WRITE,
                Pattern.PREFIX,
                "router/stages/owner.py: a tenant with limits has its records moved to its owner's partition",
            ),
            _topic(t.control, Op.WRITE, "router/stages/cancel.py: a tenant's cancel from its intake, relayed signed"),
            _topic(t.tenant_state, Op.READ, "router/accounts/store.py: the counters' snapshots, read at a takeover"),
            _topic(t.tenant_state, Op.WRITE, "router/accounts/store.py: the counters' snapshots"),
        }
    )


def router(settings: Settings) -> frozenset[Access]:
    """The router process (`fleet router`): router/service.py, router/feeds.py, router/accounts/store.py."""
    t = settings.kafka.topics
    out = {
        _topic(t.requests, Op.READ, "router/service.py: the intake, in the router group"),
        _group(t.router_group, Op.READ, "router/intake.py: the intake's consumer group (join, commit)"),
        _topic(t.status, Op.READ, "router/feeds.py: worker heartbeats (fleet/status.py StatusReader)"),
        _topic(t.usage, Op.READ, "router/feeds.py feed_health: outcomes (and accounts/store.py: settlements)"),
        _topic(t.dlq, Op.READ, "router/feeds.py feed_health: DLQ copies of model-topic records open breakers"),
        _topic(t.dlq, Op.WRITE, "router/sends.py: bad input, undeliverable refusals"),
        *_reply_writes(settings, "router/sends.py"),
        *router_tenants(settings),
    }
    for m in settings.model_names:
        out |= {
            _topic(t.model(m), Op.WRITE, "router/stages/route.py: the interactive lane"),
            _topic(t.model_batch(m), Op.WRITE, "router/stages/route.py: the batch lane"),
            _topic(t.model(m), Op.DESCRIBE, "router/feeds.py feed_load: the lane's end offsets"),
            _group(t.worker_group(m), Op.DESCRIBE, "router/feeds.py feed_load: the workers' committed offsets"),
        }
    return frozenset(out)


def worker(settings: Settings, model: str) -> frozenset[Access]:
    """One model's worker process (`fleet worker --model NAME`): worker/service.py and the parts it wires."""
    t = settings.kafka.topics
    out = {
        _topic(t.model(model), Op.READ, "worker/service.py: the interactive lane, in the model's group"),
        _topic(t.model_batch(model), Op.READ, "worker/service.py: the batch lane, in the model's group"),
        _group(t.worker_group(model), Op.READ, "worker/service.py, commits.py: the model's group (join, commit)"),
        _topic(t.control, Op.READ, "worker/control.py: cancels, every partition, no group"),
        _topic(t.status, Op.WRITE, "worker/status.py: the heartbeat"),
        _topic(t.usage, Op.WRITE, "worker/replies.py: one usage record per finished request"),
        _topic(t.dlq, Op.WRITE, "worker/replies.py: refused and poison requests"),
        *_reply_writes(settings, "worker/replies.py"),
    }
    if settings.worker.resume:  # worker/progress.py
        out |= {
            _topic(t.progress, Op.READ, "worker/progress.py: the resume state, read from the start"),
            _topic(t.progress, Op.WRITE, "worker/progress.py: each chunk's progress, a tombstone at the end"),
        }
    return frozenset(out)


def client(settings: Settings, reply_topic: str | None = None) -> frozenset[Access]:
    """A calling service using fleet/client.py (FleetClient) with its reply topic (default: the shared one).
    Its attempt to create the reply topic may fail for want of Create: the topic must then exist."""
    t = settings.kafka.topics
    return frozenset(
        {
            _topic(t.requests, Op.WRITE, "fleet/client.py: requests"),
            _topic(t.control, Op.WRITE, "fleet/client.py: cancels"),
            _topic(reply_topic or t.replies, Op.READ, "fleet/client.py: its reply topic, from the end, no group"),
        }
    )


def tenant_producer(settings: Settings, tenant: str) -> frozenset[Access]:
    """A tenant's own producers, authenticated by Kafka (any client speaking the wire contract): its intake
    topic, which names it to the router; cancels; replies under its reply prefixes, read without a group."""
    t = settings.kafka.topics
    configured = settings.tenant(tenant)
    prefixes = settings.reply_prefixes(configured) if configured else [f"{t.replies}.{tenant}."]
    return frozenset(
        {
            _topic(t.tenant_intake(tenant), Op.WRITE, "its intake topic"),
            _topic(t.control, Op.WRITE, "cancels"),
            *(Access(Resource.TOPIC, p, Op.READ, Pattern.PREFIX, "its reply topics") for p in prefixes),
        }
    )


def services(settings: Settings) -> dict[str, frozenset[Access]]:
    """The fleet's own processes: "router", and "worker-<model>" for each configured model."""
    return {"router": router(settings)} | {f"worker-{m}": worker(settings, m) for m in settings.model_names}


def covered(grants: Iterable[Access], resource: Resource, name: str, op: Op) -> bool:
    """Whether any of `grants` allows `op` on the concrete resource `name`."""
    return any(g.covers(resource, name, op) for g in grants)


def acls(grants: Iterable[Access]) -> set[ACL]:
    """The fewest ACL rules that allow every grant: a Describe that a Read or Write on the same resource
    implies, or a literal under a prefix rule with the same operation, is left out."""
    unique = set(grants)
    return {g.acl for g in unique if not any(o != g and g.within(o) for o in unique)}
