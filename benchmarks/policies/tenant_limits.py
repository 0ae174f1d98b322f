"""Tenant limits measured on real processes: one broker, several `fleet router` processes, a simulated-engine
worker (timed token emission, no model), and a client that sends as one tenant with its API key.

    rate:   routers R, a tenant at `rps` requests/s (burst B); N interactive requests sent as fast as the
            producer goes. Admitted (forwarded) requests must stay within B + rps x window + 1, where window
            spans the router's first and last forward (the forwards' record timestamps). Over-limit answers
            are timed at the client, send to `rate_limited` reply (p50/p99). Then M batch requests over the
            rate: every one is served (held and paced, never refused), at no more than the rate.
    budget: routers R (default 4), a tenant whose daily cost budget admits exactly `admits` requests (each
            reserves and spends max_tokens x the completion price: the simulated engine always generates
            max_tokens), N concurrent requests in two halves with a SIGKILL of the router that owns the tenant
            in between. Admitted must be at most admits + 1, and the owner's books (the last snapshot on
            `llm.tenants.state`) must equal the usage records: not reset, not counted twice.

Run `python -m benchmarks.policies.tenant_limits [--requests N]`; results go to
benchmarks/results/tenant_limits_<machine>_<date>_<commit>.json. tests/benchmarks/policies/test_tenant_limits.py
runs it small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.common.results import collect_meta, result_path
from benchmarks.policies.policy_fleet import MAX_TOKENS, MODEL, Client, pct, start_fleet
from contracts.messages import Done, Error, ErrorCode
from fleet.broker import EmbeddedBroker, free_port
from fleet.kafka import read_to_end
from fleet.settings import Settings
from fleet.supervisor import FleetProcesses
from fleet.tenants import mint_key
from router.accounts.store import Snapshot, keep_newest
from router.cost import read_usage

TPM, TPM_BURST = 6000, 300  # 100 tokens/s
REQUEST_TOKENS = 5 + 48 + MAX_TOKENS
PRICE = 1.0  # per 1k completion tokens; prompts are free, so a request's cost is exactly max_tokens / 1000


@dataclass(slots=True)
class RateResult:
    routers: int
    rps: float
    burst: int
    sent: int
    admitted: int
    refused: int
    refusals_well_formed: int  # rate_limited errors that are retriable and carry retry_after_ms > 0
    tpm: int  # a second tenant limited by tokens per minute only
    tpm_burst: int
    request_tokens: int  # what each of its requests reserves ("hello": 5 bytes + 48 template + max_tokens)
    tok_sent: int
    tok_admitted_tokens: int
    tok_refused: int
    tok_window_s: float
    tok_bound: float  # burst + rate x window + one request
    window_s: float  # from the first send to the last forward: every admission decision lies within it
    bound: float  # burst + rps x window + 1
    refusal_p50_ms: float  # in the burst (queueing behind the burst included)
    refusal_p99_ms: float
    alone_p50_ms: float  # one over-limit request at a time to the shared intake: moved to the owner, refused
    alone_p99_ms: float
    direct_p50_ms: float  # the same, written straight to the tenant's intake topic (no move)
    direct_p99_ms: float
    batch_sent: int
    batch_served: int
    batch_refused: int
    batch_window_s: float  # from the first batch send to the last batch forward
    batch_rate_per_s: float  # forwards per second after the burst


@dataclass(slots=True)
class BudgetResult:
    routers: int
    sent: int
    admits: int
    admitted: int
    refused_budget: int
    other: dict[str, int] = field(default_factory=dict)
    stopped_owner: str = ""  # the router that owned the tenant when it was stopped mid-run
    how: str = ""
    new_owner: str = ""
    ledger_cost: float = 0.0
    usage_cost: float = 0.0
    pending_after: int = -1


async def forwards(settings: Settings, rids: set[str]) -> dict[str, int]:
    """Request id -> timestamp (ms) of its first forward to the model's lanes."""
    lanes = (settings.kafka.topics.model(MODEL), settings.kafka.topics.model_batch(MODEL))
    out: dict[str, int] = {}
    for r in await read_to_end(settings, lanes):
        rid = (r.key or b"").decode()
        if rid in rids and rid not in out:
            out[rid] = r.timestamp
    return out


def owner_of(fleet: FleetProcesses, tenant: str) -> str | None:
    """The router that last logged taking the tenant over (JSON logs)."""
    best: tuple[float, str] | None = None
    for name in fleet.running("router-"):
        for line in fleet.log(name).splitlines():
            if '"router.tenant_owned"' in line and f'"tenant": "{tenant}"' in line.replace('":"', '": "'):
                m = re.search(r'"epoch":\s*(\d+)', line)
                epoch = float(m.group(1)) if m else 0.0
                if best is None or epoch > best[0]:
                    best = (epoch, name)
    return best[1] if best else None


async def rate_run(bootstrap: str, work: Path, n: int, batch: int, routers: int = 3) -> RateResult:
    key, h = mint_key()
    rps, burst = 20.0, 5
    capped_key, capped_h = mint_key()
    tok_key, tok_h = mint_key()
    tenants = (
        f'[[tenants]]\nname = "tok"\napi_key_hashes = ["{tok_h}"]\ntokens_per_min = {TPM}\nburst_tokens = {TPM_BURST}\n'
        f'[[tenants]]\nname = "acme"\napi_key_hashes = ["{h}"]\nrequests_per_s = {rps}\nburst_requests = {burst}\n'
        f'[[tenants]]\nname = "capped"\napi_key_hashes = ["{capped_h}"]\nrequests_per_s = 0.0001\nburst_requests = 1\n'
    )
    prefix = f"tl{uuid.uuid4().hex[:6]}"
    fleet = await start_fleet(bootstrap, work, prefix, routers, extra=tenants, price=PRICE)
    try:
        async with Client(fleet.settings, key, "acme") as client:
            rids = [f"i-{i}" for i in range(n)]
            first_sent_ms = time.time() * 1000  # no decision on these can come before this
            await client.send(rids)
            await client.wait(rids, 60)
            refusals = [
                (t - client.sent_at[r]) * 1000
                for r, (ev, t) in client.terminal.items()
                if r in client.sent_at and isinstance(ev, Error) and ev.code is ErrorCode.RATE_LIMITED
            ]
            well_formed = sum(
                1
                for ev, _ in client.terminal.values()
                if isinstance(ev, Error)
                and ev.code is ErrorCode.RATE_LIMITED
                and ev.retriable
                and (ev.retry_after_ms or 0) > 0
            )
            fw = await forwards(fleet.settings, set(rids))
            # the decisions lie between the first send and the last forward (a forward's timestamp is when the
            # router sent it, after its decision; the router's clock for a batch is read when it is fetched)
            window_s = (max(fw.values()) - first_sent_ms) / 1000 if fw else 0.0
        async with Client(fleet.settings, tok_key, "tok") as tok:
            trids = [f"t-{i}" for i in range(n // 4)]
            tok_first_ms = time.time() * 1000
            await tok.send(trids)
            await tok.wait(trids, 60)
            tfw = await forwards(fleet.settings, set(trids))
            tok_window_s = (max(tfw.values()) - tok_first_ms) / 1000 if tfw else 0.0
            tok_refused = sum(1 for ev, _ in tok.terminal.values() if isinstance(ev, Error))
        async with Client(fleet.settings, capped_key, "capped") as capped:
            # a tenant whose bucket never refills within the run: one request passes, every later one is refused
            alone: list[float] = []
            direct: list[float] = []
            await capped.send(["first"])
            own_topic = fleet.settings.kafka.topics.tenant_intake("capped")
            for i in range(max(20, n // 10)):
                for rid, topic, into in ((f"a-{i}", None, alone), (f"d-{i}", own_topic, direct)):
                    await capped.send([rid], topic=topic)
                    await capped.wait([rid], 10)
                    ev, t = capped.terminal.get(rid, (None, 0.0))
                    if isinstance(ev, Error) and ev.code is ErrorCode.RATE_LIMITED:
                        into.append((t - capped.sent_at[rid]) * 1000)
        async with Client(fleet.settings, key, "acme") as client:
            await asyncio.sleep(1.5)  # the bucket refills before the batch run
            brids = [f"b-{i}" for i in range(batch)]
            batch_sent_ms = time.time() * 1000
            await client.send(brids, priority="batch")
            await client.wait(brids, 60 + batch / rps)
            bfw = await forwards(fleet.settings, set(brids))
            bts = sorted(bfw.values())
            bwin = (bts[-1] - batch_sent_ms) / 1000 if bts else 0.0
            served = sum(1 for r in brids if isinstance(client.terminal.get(r, (None,))[0], Done))
            brefused = sum(1 for r in brids if isinstance(client.terminal.get(r, (None,))[0], Error))
            return RateResult(
                routers=routers,
                rps=rps,
                burst=burst,
                sent=n,
                admitted=len(fw),
                refused=len(refusals),
                refusals_well_formed=well_formed,
                tpm=TPM,
                tpm_burst=TPM_BURST,
                request_tokens=REQUEST_TOKENS,
                tok_sent=len(trids),
                tok_admitted_tokens=len(tfw) * REQUEST_TOKENS,
                tok_refused=tok_refused,
                tok_window_s=round(tok_window_s, 3),
                tok_bound=round(TPM_BURST + TPM / 60 * tok_window_s + REQUEST_TOKENS, 1),
                window_s=round(window_s, 3),
                bound=round(burst + rps * window_s + 1, 2),
                refusal_p50_ms=round(pct(refusals, 0.5), 2),
                refusal_p99_ms=round(pct(refusals, 0.99), 2),
                alone_p50_ms=round(pct(alone, 0.5), 2),
                alone_p99_ms=round(pct(alone, 0.99), 2),
                direct_p50_ms=round(pct(direct, 0.5), 2),
                direct_p99_ms=round(pct(direct, 0.99), 2),
                batch_sent=batch,
                batch_served=served,
                batch_refused=brefused,
                batch_window_s=round(bwin, 3),
                batch_rate_per_s=round((len(bts) - burst) / bwin, 2) if bwin > 0 else 0.0,
            )
    finally:
        fleet.stop_all()


async def budget_run(
    bootstrap: str, work: Path, n: int, admits: int, routers: int = 4, stop_owner: str = "SIGKILL"
) -> BudgetResult:
    key, h = mint_key()
    per_request = MAX_TOKENS * PRICE / 1000
    tenants = f'[[tenants]]\nname = "acme"\napi_key_hashes = ["{h}"]\ndaily_cost = {admits * per_request!r}\n'
    prefix = f"tb{uuid.uuid4().hex[:6]}"
    fleet = await start_fleet(bootstrap, work, prefix, routers, extra=tenants, price=PRICE)
    result = BudgetResult(routers=routers, sent=n, admits=admits, admitted=0, refused_budget=0)
    try:
        async with Client(fleet.settings, key, "acme") as client:
            rids = [f"r-{i}" for i in range(n)]
            half = n // 2
            await client.send(rids[:half])
            if stop_owner:  # SIGKILL (a crash: the group notices after the session timeout) or SIGTERM (a drain)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and len(client.terminal) < min(half, admits) // 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                owner = owner_of(fleet, "acme")
                if owner is None:
                    raise RuntimeError("no router logged owning the tenant")
                fleet.signal(owner, signal.Signals[stop_owner])
                result.stopped_owner, result.how = owner, stop_owner
            await client.send(rids[half:])
            await client.wait(rids, 120)
            for r in rids:
                ev = client.terminal.get(r, (None, 0.0))[0]
                if isinstance(ev, Done):
                    result.admitted += 1
                elif isinstance(ev, Error) and ev.code is ErrorCode.BUDGET_EXCEEDED:
                    result.refused_budget += 1
                else:
                    k = ev.code.value if isinstance(ev, Error) else "no terminal event"
                    result.other[k] = result.other.get(k, 0) + 1
            result.new_owner = owner_of(fleet, "acme") or ""
        # the books: usage records of this tenant against the owner's last snapshot, read until they agree
        # (the owner writes one within the snapshot interval once the last usage record is settled) or 30 s pass
        s = fleet.settings
        books_by = time.monotonic() + 30
        while True:
            usage = await read_usage(s)
            runs = {(u.id, u.run_id): u.cost for u in usage if u.tenant == "acme"}
            result.usage_cost = round(sum(runs.values()), 8)
            latest: dict[str, Snapshot] = {}  # what the next owner would load
            for r in await read_to_end(s, [s.kafka.topics.tenant_state]):
                keep_newest(latest, r.key, r.value, r.offset)
            if "acme" in latest:
                ledger = latest["acme"].state.ledger
                result.ledger_cost = round(ledger.day.cost, 8)
                result.pending_after = len(ledger.pending)
            settled = len(runs) >= result.admitted and result.pending_after == 0
            if (settled and abs(result.ledger_cost - result.usage_cost) < 1e-6) or time.monotonic() > books_by:
                break
            await asyncio.sleep(0.5)
        return result
    finally:
        fleet.stop_all()


def write(results: dict[str, object]) -> Path:
    meta = collect_meta(simulated=True)  # the worker's engine is simulated: the routers are what is measured
    path = result_path("tenant_limits", meta, "json")
    path.write_text(json.dumps({"meta": asdict(meta), **results}, indent=2) + "\n")
    return path


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            rate = await rate_run(broker.bootstrap, work, args.requests, args.batch)
            print(json.dumps(asdict(rate)), flush=True)
            bud = await budget_run(broker.bootstrap, work, args.requests, args.admits)
            print(json.dumps(asdict(bud)), flush=True)
            return {"rate": asdict(rate), "budget": asdict(bud)}
    finally:
        broker.stop_sync()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--batch", type=int, default=60)
    p.add_argument("--admits", type=int, default=100)
    args = p.parse_args()
    results = asyncio.run(main_async(args))
    print(write(results))


if __name__ == "__main__":
    main()
