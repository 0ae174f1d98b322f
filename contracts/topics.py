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
    def router_group(self) -> str:
        """Consumer group of the routers (`llm-router` with the default prefix)."""
        return f"{self.prefix}-router"

    def worker_group(self, model: str) -> str:
        """Consumer group of one model's workers (`llm-worker-<model>` with the default prefix).

        Prefixed like the topics, so two fleets sharing a cluster never share a group."""
        return f"{self.prefix}-worker-{model}"

    def model(self, name: str) -> str:
        if not _MODEL_NAME.match(name) or name == "dlq":
            raise ValueError(f"model name {name!r} is not a valid topic suffix")
        return f"{self.prefix}.requests.{name}"


class Headers:
    """Kafka header names the fleet reads and writes (values are UTF-8 bytes)."""

    CONTENT_TYPE = "content-type"
    ERROR_CODE = "fleet-error-code"
    ERROR_REASON = "fleet-error-reason"
    SOURCE_TOPIC = "fleet-source-topic"
    SOURCE_PARTITION = "fleet-source-partition"
    SOURCE_OFFSET = "fleet-source-offset"
    INTAKE_MS = "fleet-intake-ms"  # epoch ms when the router took the request
    TIER = "fleet-tier"  # the tier `auto` chose
    ATTEMPT = "fleet-attempt"
    RUN_ID = "fleet-run-id"
    DLQ_TRUNCATED = "fleet-dlq-truncated"  # on a DLQ copy cut to fit the size limit: the original value's bytes
    DLQ_HEADERS_DROPPED = "fleet-dlq-headers-dropped"  # on a DLQ copy whose original headers did not fit: count
    UNDELIVERABLE = "fleet-undeliverable"  # on a DLQ copy: the reply to this record could not be written (why)
