"""Topic and header names, in one place."""

from __future__ import annotations

import re

import msgspec

_MODEL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class Topics(msgspec.Struct, frozen=True):
    prefix: str = "llm"

    @property
    def requests(self) -> str:
        return f"{self.prefix}.requests"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.requests.dlq"

    @property
    def control(self) -> str:
        return f"{self.prefix}.control"

    @property
    def status(self) -> str:
        return f"{self.prefix}.fleet.status"

    @property
    def usage(self) -> str:
        return f"{self.prefix}.usage"

    @property
    def progress(self) -> str:
        """Compacted, keyed by request id: each running request's generation so far (workers resume from it)."""
        return f"{self.prefix}.progress"

    @property
    def tenant_state(self) -> str:
        """Compacted, keyed by tenant: the owning router's snapshot of a tenant's rate-limit and budget counters."""
        return f"{self.prefix}.tenants.state"

    @property
    def router_group(self) -> str:
        """Consumer group of the routers (`llm-router` with the default prefix)."""
        return f"{self.prefix}-router"

    def worker_group(self, model: str) -> str:
        """Consumer group of one model's workers (`llm-worker-<model>` with the default prefix).

        Prefixed like the topics, so two fleets sharing a cluster never share a group."""
        return f"{self.prefix}-worker-{model}"

    @property
    def replies(self) -> str:
        """The reply namespace: `<prefix>.replies` and the topics under it are the only ones of the fleet's
        namespace a request may name as `reply_to` (the shipped ACLs let router and workers write there)."""
        return f"{self.prefix}.replies"

    def model(self, name: str) -> str:
        """A model's interactive lane (`llm.requests.<model>`)."""
        if (
            not _MODEL_NAME.match(name)
            or name in ("dlq", "t")
            or name.startswith("t.")
            or name.endswith(".batch")  # would be another model's batch lane
        ):
            raise ValueError(f"model name {name!r} is not a valid topic suffix")
        return f"{self.prefix}.requests.{name}"

    def model_batch(self, name: str) -> str:
        """A model's batch lane (`llm.requests.<model>.batch`): `priority: batch` requests, which its workers
        take only with spare capacity (all of it in configured off-peak windows)."""
        return f"{self.model(name)}.batch"

    def tenant_intake(self, tenant: str) -> str:
        """A tenant's own intake topic (`llm.requests.t.<tenant>`): installations that authenticate producers
        with Kafka ACLs give each tenant Write on its topic alone, and the topic then names the tenant."""
        if not _MODEL_NAME.match(tenant):
            raise ValueError(f"tenant name {tenant!r} is not a valid topic suffix")
        return f"{self.prefix}.requests.t.{tenant}"

    def tenant_of_intake(self, topic: str) -> str | None:
        """The tenant whose intake topic this is, or None for the shared intake (or any other topic)."""
        head = f"{self.prefix}.requests.t."
        return topic[len(head) :] if topic.startswith(head) and len(topic) > len(head) else None

    def is_fleet_topic(self, name: str) -> bool:
        """A topic of the fleet's own namespace that is not a reply topic: intake (shared and per tenant),
        model topics, DLQ, control, status, usage, and whatever later issues add under `<prefix>.`. No reply
        may be written there: an error event would land among requests, control messages or usage."""
        if name == self.replies or name.startswith(self.replies + "."):
            return False
        return name == self.prefix or name.startswith(self.prefix + ".")


class Headers:
    """Kafka header names the fleet reads and writes (values are UTF-8 bytes)."""

    CONTENT_TYPE = "content-type"
    ERROR_CODE = "fleet-error-code"
    ERROR_REASON = "fleet-error-reason"
    SOURCE_TOPIC = "fleet-source-topic"
    SOURCE_PARTITION = "fleet-source-partition"
    SOURCE_OFFSET = "fleet-source-offset"
    SOURCE_NEXT_OFFSET = "fleet-source-next-offset"  # on an `undecodable` DLQ copy: past the batch's last offset
    INTAKE_MS = "fleet-intake-ms"  # epoch ms when the router took the request
    TIER = "fleet-tier"  # the tier `auto` chose
    ATTEMPT = "fleet-attempt"
    RUN_ID = "fleet-run-id"
    DLQ_TRUNCATED = "fleet-dlq-truncated"  # on a DLQ copy cut to fit the size limit: the original value's bytes
    DLQ_HEADERS_DROPPED = "fleet-dlq-headers-dropped"  # on a DLQ copy whose original headers did not fit: count
    # the caller's API key (a secret): read by the router's authenticate stage and the workers' cancel check,
    # never forwarded, never copied to the DLQ (fleet/records.py drops it), never logged
    API_KEY = "fleet-api-key"
    UNDELIVERABLE = "fleet-undeliverable"  # on a DLQ copy: the reply to this record could not be written (why)
    REQUESTED_MODEL = "fleet-requested-model"  # the model asked for, on a request the router sent to a fallback
