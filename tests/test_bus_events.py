"""The publishing helpers of decnet/bus/events.py: topics, payloads, ts, and
the caller's mistakes they refuse."""

import datetime
import re

import pytest

from decnet.bus import FakeBus, TopicError, events, topics

TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")


def test_topology_version_topic():
    assert topics.topology_version("t1") == "topology.t1.version"
    with pytest.raises(TopicError):
        topics.topology_version("a.b")


@pytest.mark.parametrize("state", events.STATES)
@pytest.mark.parametrize("op", events.OPS)
def test_mutation_payload_for_every_state_and_op(state, op):
    error = "boom" if state == "failed" else None
    topic, payload = events.mutation_payload("t1", "m-1", state, op=op, error=error)
    assert topic == f"topology.t1.mutation.{state}"
    assert {k: v for k, v in payload.items() if k != "ts"} == {
        "topology_id": "t1", "mutation_id": "m-1", "state": state, "op": op, "error": error}
    assert TS.match(payload["ts"])


def test_seven_ops_four_states():
    assert set(events.OPS) == {"add_lan", "remove_lan", "attach_decky", "detach_decky", "remove_decky",
                               "update_decky", "update_lan"}
    assert events.STATES == ("enqueued", "applying", "applied", "failed")


@pytest.mark.parametrize("kwargs, error", [
    (dict(state="done", op="add_lan"), ValueError),
    (dict(state="applied", op="explode"), ValueError),
    (dict(state="applied", op="add_lan", error="no"), ValueError),
    (dict(state="failed", op="add_lan", error=3), TypeError),
])
def test_mutation_refuses_mistakes(kwargs, error):
    with pytest.raises(error):
        events.mutation_payload("t1", "m1", **kwargs)


def test_ids_cannot_change_the_topic():
    with pytest.raises(TopicError):
        events.mutation_payload("t.1", "m1", "applied", op="add_lan")
    with pytest.raises(TopicError):
        events.status_payload("*", "active")


def test_timestamp_is_rfc3339_utc_milliseconds():
    when = datetime.datetime(2026, 11, 29, 17, 0, 0, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert events.timestamp(when) == "2026-11-29T16:00:00.123Z"
    assert events.timestamp(datetime.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"
    assert TS.match(events.timestamp())


def test_status_and_version_payloads():
    at = datetime.datetime(2026, 11, 29, 16, 0, tzinfo=datetime.timezone.utc)
    assert events.status_payload("t1", "active", previous="deploying", at=at) == ("topology.t1.status", {
        "topology_id": "t1", "status": "active", "previous": "deploying", "ts": "2026-11-29T16:00:00.000Z"})
    assert events.version_payload("t1", 8, previous=7, at=at) == ("topology.t1.version", {
        "topology_id": "t1", "version": 8, "previous": 7, "ts": "2026-11-29T16:00:00.000Z"})
    for bad in (dict(version=-1), dict(version=True), dict(version=3, previous=3), dict(version="3")):
        with pytest.raises(ValueError):
            events.version_payload("t1", **bad)
    with pytest.raises(ValueError):
        events.status_payload("t1", "")


def test_helpers_publish_on_a_bus(run):
    async def main():
        bus = FakeBus()
        sent = await events.mutation(bus, "t1", 42, "applying", op="attach_decky")
        await events.status_changed(bus, "t1", "active")
        await events.version_bumped(bus, "t1", 2, previous=1)
        assert [(e.topic, e.payload) for e in bus.events] == [
            ("topology.t1.mutation.applying", sent), ("topology.t1.status", bus.events[1].payload),
            ("topology.t1.version", bus.events[2].payload)]
        assert sent["mutation_id"] == "42" and bus.events[2].payload["version"] == 2

    run(main())
