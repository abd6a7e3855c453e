"""Tracing end to end: the client enqueues, a real worker process runs the jobs, and both export over
OTLP/HTTP to a receiver this test starts (tests/support/otlp.py decodes what arrives).

One trace holds the enqueue, the job's try (or each try of a retried job) and its SQL; nothing
exported names the canary email, its password or its hash. `python -m worker retry` links the job
it sends to the failed job's trace.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.cli import queue_job_id, run_cli
from tests.support.otlp import ReceivedSpan, Receiver, otlp_receiver
from tests.support.processes import start_worker, stop, wait_until
from worker import tracing
from worker.client import JobFailed, ProvisioningClient
from worker.jobs.sealing import new_seal_key
from worker.runtime.failures import failed_job
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]

CONSUMER, PRODUCER, CLIENT = 5, 4, 3  # OTLP's SpanKind numbers
FAST_RETRIES = {"retry_base_delay": 0.2, "retry_max_delay": 0.5, "poll_delay": 0.02}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The test's OTLP receiver, and this process's client tracing exporting to it."""
    with otlp_receiver() as found:
        provider = TracerProvider(resource=Resource({"service.name": "e2e-enqueuer"}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{found.endpoint}/v1/traces"))
        )
        tracing.install(provider)
        try:
            yield found
        finally:
            tracing.uninstall()
            provider.shutdown()


def worker_tracing(receiver: Receiver) -> dict[str, object]:
    """A worker's OTEL_* variables: OTLP to the receiver (the endpoint alone turns tracing on)."""
    return {"otel_exporter_otlp_endpoint": receiver.endpoint, "otel_bsp_schedule_delay": 50}


def tries(spans: list[ReceivedSpan], function: str, job_id: str) -> list[ReceivedSpan]:
    """The job's try spans, in try order."""
    found = [
        span
        for span in spans
        if span.name == f"process {function}" and span.attributes.get("messaging.message.id") == job_id
    ]
    return sorted(found, key=lambda span: int(span.attributes["job.try"]))


def sent(spans: list[ReceivedSpan], function: str, job_id: str) -> ReceivedSpan:
    (send,) = [
        span
        for span in spans
        if span.name == f"send {function}" and span.attributes.get("messaging.message.id") == job_id
    ]
    return send


def descendants(spans: list[ReceivedSpan], root: ReceivedSpan) -> list[ReceivedSpan]:
    """`root`'s descendants, through parents and through the group commit's links."""
    found: list[ReceivedSpan] = []
    frontier = {root.span_id}
    while frontier:
        children = [
            span
            for span in spans
            if span not in found
            and (span.parent_span_id in frontier or any(link[1] in frontier for link in span.links))
        ]
        found += children
        frontier = {span.span_id for span in children}
    return found


async def test_one_trace_from_the_enqueue_through_each_try_to_the_sql(
    settings: Settings, redis: ArqRedis, engine: AsyncEngine, receiver: Receiver, tmp_path: Path
) -> None:
    canary = uuid.uuid4().hex[:12]
    email, password = f"canary-{canary}@example.com", f"canary-password-{canary}"
    seal_key = new_seal_key()
    client = ProvisioningClient(redis, queue_name=settings.queue_name, seal_key=seal_key)
    # An update before its user's provision waits: NotProvisionedYet, tried again until it lands.
    update = await client.update_user(email=email, external_id="hr-17", job_id=queue_job_id(settings))
    worker = start_worker(
        settings, tmp_path / "worker.log", seal_keys=seal_key, **FAST_RETRIES, **worker_tracing(receiver)
    )
    try:

        async def update_retried() -> bool:
            found = tries(receiver.spans(), "update_user", update.job_id)
            return any(span.attributes["job.outcome"] == "retried" for span in found)

        await wait_until(update_retried, within=30, what="the update's first try, retried, exported")
        provision = await client.provision_user(
            email=email, role="member", password=password, job_id=queue_job_id(settings)
        )
        assert (await provision.result(timeout=30))["status"] == "created"
        assert (await update.result(timeout=30))["status"] == "updated"
    finally:
        assert stop(worker) == 0  # its shutdown exports the spans still batched
    spans = receiver.spans()

    # The provision: enqueue (this process) → try (the worker) → SQL, one trace.
    send = sent(spans, "provision_user", provision.job_id)
    (process,) = tries(spans, "provision_user", provision.job_id)
    assert (send.service, send.kind) == ("e2e-enqueuer", PRODUCER)
    assert (process.service, process.kind) == ("provisioning-worker", CONSUMER)
    assert (process.trace_id, process.parent_span_id) == (send.trace_id, send.span_id)
    assert process.attributes["job.outcome"] == "succeeded"
    assert process.attributes["job.function"] == "provision_user"
    assert float(process.attributes["job.queued_ms"]) >= 0
    # A sealed password's write goes alone, not through a group commit (whose spans the
    # integration tests cover): its SQL is the try's own.
    below = descendants(spans, process)
    statements = [span for span in below if span.attributes.get("db.system") == "postgresql"]
    assert statements
    assert all(span.kind == CLIENT for span in statements)
    assert any("user_states" in str(span.attributes.get("db.statement")) for span in statements)

    # The update: every try is a child of its enqueue; each says how it ended.
    update_send = sent(spans, "update_user", update.job_id)
    update_tries = tries(spans, "update_user", update.job_id)
    assert len(update_tries) >= 2
    assert [int(s.attributes["job.try"]) for s in update_tries] == list(range(1, len(update_tries) + 1))
    parents = {(s.trace_id, s.parent_span_id) for s in update_tries}
    assert parents == {(update_send.trace_id, update_send.span_id)}
    outcomes = [s.attributes["job.outcome"] for s in update_tries]
    assert outcomes == ["retried"] * (len(update_tries) - 1) + ["succeeded"]
    assert {s.attributes["error.type"] for s in update_tries[:-1]} == {"NotProvisionedYet"}

    # Nothing exported, in any field or byte, names the person or their password.
    async with engine.connect() as conn:
        stored_hash = (
            await conn.execute(text("SELECT hashed_password FROM users WHERE email = :e"), {"e": email})
        ).scalar_one()
    exported = b"".join(receiver.bodies)
    assert provision.job_id.encode() in exported
    assert update.job_id.encode() in exported
    for secret in (email, f"canary-{canary}", password, stored_hash, stored_hash.rsplit("$", 1)[-1]):
        assert secret.encode() not in exported
        assert all(secret not in repr(span) for span in spans)


async def test_retry_links_the_job_it_sends_to_the_failed_job_s_trace(
    settings: Settings, redis: ArqRedis, receiver: Receiver, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    refused = await client.deactivate_user(
        email="leaver@example.com", job_id=queue_job_id(settings), as_of="2099-01-01T00:00:00Z"
    )
    worker = start_worker(settings, tmp_path / "worker.log", **worker_tracing(receiver))
    try:
        with pytest.raises(JobFailed):
            await refused.result(timeout=30)
    finally:
        assert stop(worker) == 0
    (failed,) = tries(receiver.spans(), "deactivate_user", refused.job_id)
    assert (failed.attributes["job.outcome"], failed.attributes["error.type"]) == ("failed", "StampRefused")
    record = await failed_job(redis, settings.queue_name, refused.job_id)
    assert record is not None
    assert failed.span_id in record["trace"]["traceparent"]

    again = queue_job_id(settings)
    done = await run_cli(
        settings, "retry", refused.job_id, "--new-job-id", again, "--as-of", "now", cwd=tmp_path,
        otel_exporter_otlp_endpoint=receiver.endpoint,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    send = sent(receiver.spans(), "deactivate_user", again)  # exported as the CLI exited
    assert (send.service, send.kind) == ("provisioning-cli", PRODUCER)
    assert send.links == [(failed.trace_id, failed.span_id)]
    assert send.trace_id != failed.trace_id  # a trace of its own, linked to the old one
