"""Recording subclasses of aiokafka's consumer, producer, admin client and raw client: the real clients, talking
to the real broker, that first write down each Kafka operation they are asked for in ACL terms (the broker of
the tests has no ACLs, so this record is what the ACL check reads).

Each call is noted as (resource, name, operation) the way a broker with ACLs checks it, before the real method
runs (the broker checks an attempt, whether it succeeds or not):

- a consumer joining its group (`start` with a `group_id`), `commit`: Read on the group (and on the topics);
- `subscribe`, `assign`, topics given to the constructor, `getmany`/`getone`, a raw Fetch request: Read on
  each topic (fetching it);
- `partitions_for_topic`, `end_offsets`, `beginning_offsets`, `seek_to_end`, `seek_to_beginning`, producer
  `partitions_for`: Describe on the topic (Metadata, ListOffsets);
- consumer `committed`, admin `list_consumer_group_offsets`: Describe on the group and the topics (OffsetFetch);
- producer `send`, `send_and_wait`: Write on the topic.

`install` puts them where the fleet builds its clients: fleet/kafka.py (`make_consumer`, `make_producer`, its
admin client), `aiokafka.admin.AIOKafkaAdminClient` (router/feeds.py imports it there, inside the function),
and fleet/fetch.py's raw client. A client of aiokafka's built anywhere else fails to start and is named in
`Recorder.unrecorded`: what it would do goes unseen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest

from fleet.topic_access import Op, Resource

Use = tuple[Resource, str, Op]


class Recorder:
    """Every operation seen (with the first client that did it), and the clients that escaped the recording."""

    def __init__(self) -> None:
        self.used: dict[Use, str] = {}
        self.unrecorded: list[str] = []
        self._clients = 0
        # the inner AIOKafkaClient of each recording consumer, producer and admin client: bootstrapping one of
        # these is the recording client's own start, not a client of its own
        self.inner: weakref.WeakSet[AIOKafkaClient] = weakref.WeakSet()

    def use(self, resource: Resource, name: str, op: Op, by: str) -> None:
        self.used.setdefault((resource, name, op), by)

    def label(self, kind: str) -> str:
        self._clients += 1
        return f"{kind}#{self._clients}"


class _Recording:
    recorder: Recorder  # set by install()
    by: str

    def _use(self, resource: Resource, name: str, op: Op) -> None:
        self.recorder.use(resource, name, op, self.by)

    def _topics(self, tps: Iterable[TopicPartition], op: Op) -> None:
        for tp in tps:
            self._use(Resource.TOPIC, tp.topic, op)


class RecordingConsumer(_Recording, AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, *topics: str, group_id: str | None = None, **kw: Any) -> None:
        self.by = self.recorder.label(f"consumer(group={group_id})")
        self._acl_group = group_id
        for t in topics:  # aiokafka subscribes to these itself, without calling subscribe()
            self._use(Resource.TOPIC, t, Op.READ)
        super().__init__(*topics, group_id=group_id, **kw)
        self.recorder.inner.add(self._client)

    def subscribe(self, topics: Iterable[str] = (), pattern: str | None = None, listener: Any = None) -> None:
        assert pattern is None, "a pattern subscription: which topics it reads is the broker's to say"
        topics = list(topics)
        for t in topics:
            self._use(Resource.TOPIC, t, Op.READ)
        super().subscribe(topics, listener=listener)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        self._topics(partitions, Op.READ)
        super().assign(partitions)

    async def start(self) -> None:
        if self._acl_group is not None:
            self._use(Resource.GROUP, self._acl_group, Op.READ)  # JoinGroup, SyncGroup, Heartbeat
        await super().start()

    def _fetched(self, partitions: tuple[TopicPartition, ...]) -> None:
        self._topics(partitions or self.assignment(), Op.READ)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        self._fetched(partitions)
        return await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)

    async def getone(self, *partitions: TopicPartition) -> Any:
        self._fetched(partitions)
        return await super().getone(*partitions)

    def partitions_for_topic(self, topic: str) -> Any:
        self._use(Resource.TOPIC, topic, Op.DESCRIBE)  # Metadata
        return super().partitions_for_topic(topic)

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> Any:
        partitions = list(partitions)
        self._topics(partitions, Op.DESCRIBE)  # ListOffsets
        return await super().end_offsets(partitions)

    async def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> Any:
        partitions = list(partitions)
        self._topics(partitions, Op.DESCRIBE)  # ListOffsets
        return await super().beginning_offsets(partitions)

    async def seek_to_end(self, *partitions: TopicPartition) -> Any:
        self._topics(partitions or self.assignment(), Op.DESCRIBE)  # ListOffsets
        return await super().seek_to_end(*partitions)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> Any:
        self._topics(partitions or self.assignment(), Op.DESCRIBE)  # ListOffsets
        return await super().seek_to_beginning(*partitions)

    async def committed(self, partition: TopicPartition) -> Any:
        assert self._acl_group is not None, "committed() needs a group"
        self._use(Resource.GROUP, self._acl_group, Op.DESCRIBE)  # OffsetFetch
        self._use(Resource.TOPIC, partition.topic, Op.DESCRIBE)
        return await super().committed(partition)

    async def commit(self, offsets: Any = None) -> None:
        assert self._acl_group is not None, "commit() needs a group"
        self._use(Resource.GROUP, self._acl_group, Op.READ)  # OffsetCommit
        self._topics(offsets if offsets is not None else self.assignment(), Op.READ)
        await super().commit(offsets)


class RecordingProducer(_Recording, AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, **kw: Any) -> None:
        self.by = self.recorder.label("producer")
        super().__init__(**kw)
        self.recorder.inner.add(self.client)

    async def partitions_for(self, topic: str) -> Any:
        self._use(Resource.TOPIC, topic, Op.DESCRIBE)
        return await super().partitions_for(topic)

    async def send(self, topic: str, *args: Any, **kw: Any) -> Any:
        self._use(Resource.TOPIC, topic, Op.WRITE)  # Produce
        return await super().send(topic, *args, **kw)

    async def send_and_wait(self, topic: str, *args: Any, **kw: Any) -> Any:
        self._use(Resource.TOPIC, topic, Op.WRITE)  # (aiokafka's send_and_wait calls send: recorded there too)
        return await super().send_and_wait(topic, *args, **kw)


class RecordingAdmin(_Recording, AIOKafkaAdminClient):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, **kw: Any) -> None:
        self.by = self.recorder.label("admin")
        super().__init__(**kw)
        self.recorder.inner.add(self._client)

    async def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TopicPartition] | None = None
    ) -> Any:
        self._use(Resource.GROUP, group_id, Op.DESCRIBE)  # OffsetFetch
        self._topics(partitions or (), Op.DESCRIBE)
        return await super().list_consumer_group_offsets(group_id, group_coordinator_id, partitions)


class RecordingClient(_Recording, AIOKafkaClient):  # type: ignore[misc]  # aiokafka is untyped
    """fleet/fetch.py's raw client: it fetches an undecodable batch's bytes from a topic its consumer reads."""

    def __init__(self, **kw: Any) -> None:
        self.by = self.recorder.label("raw client")
        super().__init__(**kw)

    async def send(self, node_id: Any, request: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(request, FetchRequest):
            for topic, _ in request.topics:
                self._use(Resource.TOPIC, topic, Op.READ)
        return await super().send(node_id, request, *args, **kw)


def install(monkeypatch: pytest.MonkeyPatch, recorder: Recorder) -> None:
    """Every client the fleet builds records on `recorder` and then talks to the broker as usual; a client of
    aiokafka's built anywhere else fails to start, and says so in `recorder.unrecorded`."""
    import aiokafka.admin

    import fleet.fetch
    import fleet.kafka

    def guard(cls: type[Any], method: str, allowed: Callable[[Any], bool]) -> None:
        real = getattr(cls, method)

        async def checked(self: Any, *args: Any, **kw: Any) -> Any:
            if not allowed(self):
                what = type(self).__name__
                recorder.unrecorded.append(what)
                raise AssertionError(f"a {what} the recording does not see: what it does would go unchecked")
            return await real(self, *args, **kw)

        monkeypatch.setattr(cls, method, checked)

    guard(AIOKafkaConsumer, "start", lambda c: isinstance(c, RecordingConsumer))
    guard(AIOKafkaProducer, "start", lambda c: isinstance(c, RecordingProducer))
    guard(AIOKafkaAdminClient, "start", lambda c: isinstance(c, RecordingAdmin))
    guard(AIOKafkaClient, "bootstrap", lambda c: isinstance(c, RecordingClient) or c in recorder.inner)
    monkeypatch.setattr(_Recording, "recorder", recorder, raising=False)
    monkeypatch.setattr(fleet.kafka, "AIOKafkaConsumer", RecordingConsumer)
    monkeypatch.setattr(fleet.kafka, "AIOKafkaProducer", RecordingProducer)
    monkeypatch.setattr(fleet.kafka, "AIOKafkaAdminClient", RecordingAdmin)
    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", RecordingAdmin)
    monkeypatch.setattr(fleet.fetch, "AIOKafkaClient", RecordingClient)
