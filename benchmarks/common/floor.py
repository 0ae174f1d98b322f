"""The raw Kafka floor: the fleet's three hops with no work in them.

    client --(<prefix>.requests)--> relay --(<prefix>.requests.echo)--> echo --(reply_to)--> client

`relay` stands where the router stands (consumer group, decode, publish,
commit after the ack); `echo` stands where a worker stands (consumer group,
decode, answer with one chunk and a `done` at once, commit after the ack).
Each runs in its own process, as the router and the workers do, and the
client side is the fleet's own `FleetClient` under another topic prefix, so
every hop has the same client settings (`fleet.kafka` factories) as the
fleet. Run `python -m benchmarks.common.floor relay|echo --bootstrap HOST:PORT --prefix P`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from contracts.codec import Codec, DecodeFailure, content_type_from_headers
from contracts.messages import Chunk, Done, FinishReason, Timings, Usage
from contracts.topics import Headers
from fleet.settings import Settings
from fleet.supervisor import FleetProcesses

ECHO_MODEL = "echo"


def floor_settings(settings: Settings, prefix: str, bootstrap: str | None = None) -> Settings:
    kafka = msgspec.structs.replace(
        settings.kafka, topic_prefix=prefix, bootstrap_servers=bootstrap or settings.kafka.bootstrap
    )
    return msgspec.structs.replace(settings, kafka=kafka)


def encode_settings(settings: Settings) -> str:
    """Settings for a child process's environment (msgpack keeps infinities that JSON cannot)."""
    return base64.b64encode(msgspec.msgpack.encode(settings)).decode()


def decode_settings(raw: str) -> Settings:
    return msgspec.msgpack.decode(base64.b64decode(raw), type=Settings)


def floor_topics(settings: Settings) -> dict[str, int]:
    k = settings.kafka
    return {
        k.topics.requests: k.intake_partitions,
        k.topics.model(ECHO_MODEL): k.model_partitions,
        f"{k.topic_prefix}.replies": k.reply_partitions,
    }


async def serve(settings: Settings, role: str, stop: asyncio.Event) -> None:
    """Run one hop until `stop` is set."""
    from fleet.kafka import ProducerPurpose, make_consumer, make_producer

    topics = settings.kafka.topics
    src = topics.requests if role == "relay" else topics.model(ECHO_MODEL)
    purpose = ProducerPurpose.REQUESTS if role == "relay" else ProducerPurpose.REPLIES
    codec = Codec()
    producer = make_producer(settings, purpose=purpose)
    consumer = make_consumer(settings, src, group_id=f"{settings.kafka.topic_prefix}-{role}")
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            for tp, records in batch.items():
                futs: list[asyncio.Future[Any]] = []
                for rec in records:
                    try:
                        ct = content_type_from_headers(rec.headers)
                        req = codec.decode_request(rec.value or b"", ct)
                    except DecodeFailure:
                        continue
                    headers = [(Headers.CONTENT_TYPE, ct.value.encode())]
                    if role == "relay":
                        futs.append(
                            await producer.send(
                                topics.model(ECHO_MODEL),
                                codec.encode(req, ct),
                                key=req.id.encode(),
                                headers=headers,
                            )
                        )
                    else:
                        for ev in _echo(req.id, req.reply_to):
                            futs.append(
                                await producer.send(
                                    req.reply_to, codec.encode(ev, ct), key=req.id.encode(), headers=headers
                                )
                            )
                await asyncio.gather(*futs)
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()
        await producer.stop()


def _echo(request_id: str, reply_to: str) -> list[Chunk | Done]:
    zero = Timings(queue_ms=0.0, ttft_ms=0.0, tpot_ms=0.0, total_ms=0.0)
    return [
        Chunk(id=request_id, seq=0, text="echo", run_id="floor"),
        Done(
            id=request_id,
            seq=1,
            text="echo",
            finish_reason=FinishReason.LENGTH,
            model=ECHO_MODEL,
            usage=Usage(prompt_tokens=0, completion_tokens=1),
            timings=zero,
            run_id="floor",
        ),
    ]


class FloorRelays:
    """The relay and echo processes of the floor under `prefix` (through the fleet's process supervisor);
    `async with`. `roles` picks which hops run (the router-throughput benchmark needs only the relay)."""

    def __init__(
        self, settings: Settings, prefix: str, *, roles: tuple[str, ...] = ("relay", "echo"), logs: Path | None = None
    ) -> None:
        self.settings = floor_settings(settings, prefix)
        self.prefix = prefix
        self.roles = roles
        self._procs = FleetProcesses(
            self.settings.kafka.bootstrap,
            logs or Path(tempfile.mkdtemp(prefix="bench-floor-")),
            env={"BENCH_FLOOR_SETTINGS": encode_settings(self.settings)},
        )

    async def __aenter__(self) -> FloorRelays:
        from fleet.kafka import ensure_topics

        await ensure_topics(self.settings, floor_topics(self.settings))
        for role in self.roles:
            args = (role, "--bootstrap", self.settings.kafka.bootstrap, "--prefix", self.prefix)
            self._procs.start(role, *args, module="benchmarks.common.floor")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop_sync)

    def stop_sync(self) -> None:
        self._procs.stop_all(grace_s=10)

    def check_alive(self) -> None:
        for name, p in self._procs.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"floor {name} exited with {p.returncode}:\n{self._procs.log(name)[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.common.floor", description="a hop of the raw Kafka floor")
    ap.add_argument("role", choices=["relay", "echo"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--prefix", default="bench-floor")
    args = ap.parse_args(argv)
    from fleet.settings import load_settings

    raw = os.environ.get("BENCH_FLOOR_SETTINGS")
    base = decode_settings(raw) if raw else load_settings()
    settings = floor_settings(base, args.prefix, args.bootstrap)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(serve(settings, args.role, stop))
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
