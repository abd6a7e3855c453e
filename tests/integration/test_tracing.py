"""Tracing on a real worker (in-process, burst) and PostgreSQL: the spans, their parents and links,
and what they never hold. The exporter is in memory here; tests/e2e/test_tracing.py goes over OTLP."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence

import pytest
from arq.connections import ArqRedis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.integration.runtime.test_group_commit import RETENTION, provision
from tests.support.ids import new_id
from tests.support.worker_runner import run_burst
from worker import tracing
from worker.client import ProvisioningClient
from worker.db.session import SessionFactory, create_engine
from worker.jobs.serialization import TRACE_KEY, serialize
from worker.runtime.failures import failed_job
from worker.runtime.group_commit import CommandGroups
from worker.settings import Settings

pytestmark = pytest.mark.usefixtures("committing_sessions")

CANARY = "canary-7f3a91"


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def by_job(spans: Sequence[ReadableSpan], name: str) -> dict[str, ReadableSpan]:
    return {str((span.attributes or {})["messaging.message.id"]): span for span in named(spans, name)}


def everything_said(spans: Sequence[ReadableSpan]) -> str:
    """Every name, attribute, event, link attribute and status text of `spans`, as one string."""
    return json.dumps([json.loads(span.to_json()) for span in spans])


async def test_each_job_continues_its_enqueue_trace_down_to_the_sql(
    settings: Settings, redis: ArqRedis, exported: InMemorySpanExporter
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    jobs = [
        await client.provision_user(email=f"{CANARY}-{i}@example.com", role="member", job_id=new_id())
        for i in range(3)
    ]
    await run_burst(settings)
    assert [(await job.result(timeout=5))["status"] for job in jobs] == ["created"] * 3

    spans = exported.get_finished_spans()
    sent, processed = by_job(spans, "send provision_user"), by_job(spans, "process provision_user")
    assert set(sent) == set(processed) == {job.job_id for job in jobs}
    for job_id, process in processed.items():
        send = sent[job_id]
        assert send.kind is SpanKind.PRODUCER
        assert process.kind is SpanKind.CONSUMER
        assert process.parent is not None
        assert process.parent.span_id == send.context.span_id
        assert process.context.trace_id == send.context.trace_id
        attributes = dict(process.attributes or {})
        assert attributes["job.function"] == "provision_user"
        assert attributes["job.try"] == 1
        assert attributes["job.outcome"] == "succeeded"
        assert float(str(attributes["job.queued_ms"])) >= 0
        assert "error.type" not in attributes
    # Every job's write is one group commit's: its parent, or one of its links.
    groups = named(spans, "group commit")
    for process in processed.values():
        owners = [
            group
            for group in groups
            if (group.parent is not None and group.parent.span_id == process.context.span_id)
            or any(link.context.span_id == process.context.span_id for link in group.links)
        ]
        assert len(owners) == 1
    sql = [span for span in spans if (span.attributes or {}).get("db.system") == "postgresql"]
    group_ids = {group.context.span_id for group in groups}
    assert any(span.parent is not None and span.parent.span_id in group_ids for span in sql)
    assert all(span.kind is SpanKind.CLIENT for span in sql)
    assert CANARY not in everything_said(spans)


async def test_a_group_commit_span_is_the_first_jobs_child_and_links_the_others(
    committing_sessions: SessionFactory, exported: InMemorySpanExporter
) -> None:
    groups = CommandGroups(committing_sessions, retention=RETENTION)
    tracer = tracing.tracer()
    assert tracer is not None

    async def job(number: int) -> None:
        with tracing.span(tracer, f"job {number}"):
            await groups.apply(provision(f"{CANARY}-g{number}@example.com", "member"))

    await asyncio.gather(*(job(number) for number in range(3)))

    spans = exported.get_finished_spans()
    jobs = [named(spans, f"job {number}")[0] for number in range(3)]
    (group,) = named(spans, "group commit")
    assert group.parent is not None
    assert group.parent.span_id == jobs[0].context.span_id
    assert [link.context.span_id for link in group.links] == [j.context.span_id for j in jobs[1:]]
    assert (group.attributes or {})["group.size"] == 3


async def test_a_group_commit_span_follows_only_the_sampled_jobs(
    committing_sessions: SessionFactory, exported: InMemorySpanExporter
) -> None:
    """A job whose enqueuer did not sample its trace gets no link: that trace is never exported.
    A group of such jobs alone is not sampled either: it records nothing."""
    groups = CommandGroups(committing_sessions, retention=RETENTION)
    tracer = tracing.tracer()
    assert tracer is not None

    async def job(number: int, sampled: bool) -> None:
        parent = f"00-{uuid.uuid4().hex}-{number + 1:016x}-{'01' if sampled else '00'}"
        with tracing.span(tracer, f"job {number}", parent=tracing.extract({"traceparent": parent})):
            await groups.apply(provision(f"{CANARY}-s{number}@example.com", "member"))

    await asyncio.gather(job(0, False), job(1, True), job(2, False), job(3, True))
    spans = exported.get_finished_spans()
    (group,) = named(spans, "group commit")
    sampled = [named(spans, f"job {number}")[0] for number in (1, 3)]
    assert [span.name for span in spans if span.name.startswith("job")] == ["job 1", "job 3"]
    assert group.parent is not None
    assert group.parent.span_id == sampled[0].context.span_id
    assert [link.context.span_id for link in group.links] == [sampled[1].context.span_id]
    assert (group.attributes or {})["group.size"] == 4

    exported.clear()
    await asyncio.gather(job(4, False), job(5, False))
    assert exported.get_finished_spans() == ()


async def test_a_failed_job_keeps_its_trace_and_a_job_sent_again_links_to_it(
    settings: Settings, redis: ArqRedis, exported: InMemorySpanExporter
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    refused = await client.deactivate_user(
        email=f"{CANARY}@example.com", job_id=new_id(), as_of="2099-01-01T00:00:00Z"
    )
    await run_burst(settings)

    failure = await failed_job(redis, settings.queue_name, refused.job_id)
    assert failure is not None
    (process,) = named(exported.get_finished_spans(), "process deactivate_user")
    attributes = dict(process.attributes or {})
    assert (attributes["job.outcome"], attributes["error.type"]) == ("failed", "StampRefused")
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == "StampRefused"  # the type, never the message
    assert not process.events  # no exception event: its message quotes the payload
    context = process.context
    version, trace_id, span_id, _flags = failure["trace"]["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", f"{context.trace_id:032x}", f"{context.span_id:016x}")

    again = await client.enqueue(
        "deactivate_user", follows=failure["trace"], email=f"{CANARY}@example.com", job_id=new_id()
    )
    send = by_job(exported.get_finished_spans(), "send deactivate_user")[again.job_id]
    assert [(link.context.trace_id, link.context.span_id) for link in send.links] == [
        (context.trace_id, context.span_id)
    ]
    assert send.context.trace_id != context.trace_id  # a trace of its own, linked to the old one
    assert CANARY not in everything_said(exported.get_finished_spans())


async def test_jobs_without_a_trace_context_run_under_a_root_span(
    settings: Settings, redis: ArqRedis, exported: InMemorySpanExporter
) -> None:
    job_id = new_id()
    raw = {"f": "provision_user", "a": [], "k": {"email": f"{CANARY}@example.com", "role": "admin"}}
    envelope = serialize({**raw, "t": None, "et": int(time.time() * 1000)})  # as written before tracing
    await redis.set(f"arq:job:{job_id}", envelope, px=60_000)
    await redis.zadd(settings.queue_name, {job_id: 0})
    await run_burst(settings)

    (process,) = named(exported.get_finished_spans(), "process provision_user")
    assert process.parent is None
    assert (process.attributes or {})["job.outcome"] == "succeeded"


async def test_with_tracing_off_a_traced_envelope_runs_as_any_other(
    settings: Settings, redis: ArqRedis
) -> None:
    job_id = new_id()
    envelope: dict[str, object] = {
        "f": "provision_user",
        "a": [],
        "k": {"email": f"{CANARY}@example.com", "role": "admin"},
        "t": None,
        "et": int(time.time() * 1000),
        TRACE_KEY: {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    }
    await redis.set(f"arq:job:{job_id}", json.dumps(envelope), px=60_000)
    await redis.zadd(settings.queue_name, {job_id: 0})
    assert tracing.tracer() is None
    await run_burst(settings)

    job = ProvisioningClient(redis, queue_name=settings.queue_name).job(job_id)
    assert (await job.result(timeout=5))["status"] == "created"


async def test_a_failed_statement_s_span_names_the_error_type_not_its_text(
    settings: Settings, exported: InMemorySpanExporter
) -> None:
    engine = create_engine(settings)
    tracing.instrument_engine(engine.sync_engine)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as error:
                await conn.execute(text("SELECT CAST(:value AS integer)"), {"value": f"{CANARY}@example.com"})
            assert CANARY in str(error.value.orig)  # PostgreSQL's message quotes the value
    finally:
        tracing.uninstrument_engine()
        await engine.dispose()

    failed = [span for span in exported.get_finished_spans() if span.status.status_code is StatusCode.ERROR]
    assert [(span.name.split()[0], span.status.description) for span in failed] == [("SELECT", "DataError")]
    assert "CAST(" in str((failed[0].attributes or {})["db.statement"])
    assert CANARY not in everything_said(exported.get_finished_spans())
