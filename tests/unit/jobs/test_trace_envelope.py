"""The envelope's trace key: written beside `f`/`a`/`k`, read back for the job's task, ignored by ARQ."""

from __future__ import annotations

import json
from contextvars import copy_context

import pytest
from arq.jobs import deserialize_job, serialize_job, serialize_result

from worker.jobs.serialization import (
    TRACE_KEY,
    carrying_trace,
    deserialize,
    incoming_trace,
    serialize,
    trace_fields,
)
from worker.jobs.serialization import (
    deserialize_job as worker_deserialize,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CARRIER = {"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"}


def job(**extra: object) -> bytes:
    with carrying_trace(extra.pop("carrier", None)):  # type: ignore[arg-type]
        return serialize_job("delete_user", (), {"email": "a@example.com"}, None, 5, serializer=serialize)


def test_the_trace_context_is_a_top_level_key_not_an_argument() -> None:
    envelope = json.loads(job(carrier=CARRIER))
    assert envelope == {
        "t": None,
        "f": "delete_user",
        "a": [],
        "k": {"email": "a@example.com"},
        "et": 5,
        TRACE_KEY: CARRIER,
    }


def test_outside_carrying_trace_jobs_carry_no_trace_key() -> None:
    assert TRACE_KEY not in json.loads(job())
    assert TRACE_KEY not in json.loads(job(carrier=None))


def test_results_never_carry_the_trace_key() -> None:
    with carrying_trace(CARRIER):
        raw = serialize_result("f", (), {}, 1, 5, True, {}, 1, 2, "ref", "q", "id", serializer=serialize)
    assert raw is not None
    assert TRACE_KEY not in json.loads(raw)


def test_the_worker_reads_the_key_back_for_the_job_s_task_only() -> None:
    def run() -> tuple[dict[str, str] | None, object]:
        definition = deserialize_job(job(carrier=CARRIER), deserializer=worker_deserialize)
        return incoming_trace(), definition.kwargs

    trace, kwargs = copy_context().run(run)
    assert trace == CARRIER
    assert kwargs == {"email": "a@example.com"}
    assert incoming_trace() is None  # another job's task (another context) does not see it


def test_an_old_style_envelope_without_the_key_reads_as_before() -> None:
    def run() -> object:
        definition = deserialize_job(
            b'{"f": "delete_user", "k": {"email": "a@example.com"}, "et": 5}', deserializer=worker_deserialize
        )
        return (definition.function, definition.kwargs, incoming_trace())

    assert copy_context().run(run) == ("delete_user", {"email": "a@example.com"}, None)


def test_arq_and_older_workers_ignore_the_key() -> None:
    definition = deserialize_job(job(carrier=CARRIER), deserializer=deserialize)
    assert (definition.function, definition.kwargs) == ("delete_user", {"email": "a@example.com"})
    assert definition.job_try is None


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (CARRIER, CARRIER),
        ({"traceparent": TRACEPARENT}, {"traceparent": TRACEPARENT}),
        ({"traceparent": TRACEPARENT, "baggage": "user=a@example.com"}, {"traceparent": TRACEPARENT}),
        ({"tracestate": "x=1"}, None),
        ({"traceparent": 7}, None),
        ({"traceparent": ""}, None),
        ({"traceparent": "x" * 513}, None),
        ("00-abc", None),
        (None, None),
        ([TRACEPARENT], None),
    ],
)
def test_a_malformed_trace_context_is_dropped_never_failing_the_job(value: object, kept: object) -> None:
    assert trace_fields(value) == kept

    def run() -> object:
        raw = json.dumps({"f": "delete_user", "k": {}, "et": 5, TRACE_KEY: value}).encode()
        deserialize_job(raw, deserializer=worker_deserialize)
        return incoming_trace()

    assert copy_context().run(run) == kept
