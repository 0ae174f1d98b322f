"""Send one request to llm-fleet and print its streamed reply, with Confluent's client (librdkafka).

    pip install confluent-kafka
    python python_confluent.py --bootstrap localhost:9092 --prompt "Say hello" [--compression zstd] [--reader group]

The reply topic is read with assign() from its end, before the request is sent (the fleet's recommended way:
the process that sent a request reads its own replies, with no consumer-group join or rebalance in the way).
`--reader group` shows a consumer-group reader instead; on the embedded dev broker it needs a short
session.timeout.ms (the broker holds a group join for half of it). Exit status: 0 done, 2 error event, 1 timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="localhost:9092")
    ap.add_argument("--requests-topic", default="llm.requests")
    ap.add_argument("--reply-to", default="llm.replies.example")
    ap.add_argument("--model", default="auto")
    ap.add_argument("--prompt", default="Say hello in five words.")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--compression", default="zstd", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    ap.add_argument("--reader", default="assign", choices=["assign", "group"])
    ap.add_argument("--api-key", default=None, help="a tenant's key, when the fleet has tenants")
    ap.add_argument("--timeout-s", type=float, default=60)
    args = ap.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for future in admin.create_topics([NewTopic(args.reply_to, num_partitions=4, replication_factor=1)]).values():
        try:
            future.result(timeout=10)
        except KafkaException as exc:  # it exists already (or topics are made by the operator): read it as it is
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                print(f"reply topic {args.reply_to!r} not created: {exc}", file=sys.stderr)
    consumer = reply_reader(args)

    request_id = f"req-{uuid.uuid4().hex[:12]}"
    request = {
        "id": request_id,
        "reply_to": args.reply_to,
        "prompt": args.prompt,
        "model": args.model,
        "max_tokens": args.max_tokens,
        "timeout_ms": int(args.timeout_s * 1000),
    }
    headers = [("content-type", b"application/json")]
    if args.api_key:
        headers.append(("fleet-api-key", args.api_key.encode()))
    producer = Producer({"bootstrap.servers": args.bootstrap, "compression.type": args.compression, "linger.ms": 0})
    producer.produce(args.requests_topic, json.dumps(request).encode(), key=request_id.encode(), headers=headers)
    producer.flush(10)

    deadline = time.monotonic() + args.timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            event = json.loads(msg.value())
            if event.get("id") != request_id:
                continue  # another request's reply on the same topic
            print(json.dumps(event), flush=True)
            if event["type"] == "done":
                return 0
            if event["type"] == "error":  # typed: code, message, retriable
                return 2
        return 1
    finally:
        consumer.close()


def reply_reader(args: argparse.Namespace) -> Consumer:
    if args.reader == "group":
        consumer = Consumer(
            {
                "bootstrap.servers": args.bootstrap,
                "group.id": f"example-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "latest",
                # on the embedded dev broker: it answers a group join after half the session timeout
                "session.timeout.ms": 2000,
                "heartbeat.interval.ms": 500,
                "fetch.wait.max.ms": 100,
            }
        )
        assigned: list[int] = []

        def on_assign(c: Consumer, parts: list[TopicPartition]) -> None:
            for tp in parts:  # from each partition's end as it is now, not as it is at the first fetch
                tp.offset = c.get_watermark_offsets(tp, timeout=10)[1]
            c.assign(parts)
            assigned.extend(tp.partition for tp in parts)

        consumer.subscribe([args.reply_to], on_assign=on_assign)
        while not assigned:  # joined: replies sent from now on reach this reader
            consumer.poll(0.1)
        return consumer
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "unused", "fetch.wait.max.ms": 100})
    meta = consumer.list_topics(args.reply_to, timeout=10)
    parts = sorted(meta.topics[args.reply_to].partitions)
    # from each partition's end as it is now (absolute offsets, so no reply that lands later is missed)
    ends = [consumer.get_watermark_offsets(TopicPartition(args.reply_to, p), timeout=10)[1] for p in parts]
    consumer.assign([TopicPartition(args.reply_to, p, end) for p, end in zip(parts, ends, strict=True)])
    return consumer


if __name__ == "__main__":
    sys.exit(main())
