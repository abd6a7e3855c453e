"""What tracing costs one job, part by part, with the official SDK and OTLP encoder.

python -m bench.tracing_parts [--jobs 20000] [--rounds 5]

In this process, no worker, no network: the exporter keeps the spans, so each part is measured
alone. Figures are process CPU per job (the export thread's too), the median of `--rounds`.
docs/performance.md ("Tracing") explains what they mean for the worker's rate.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from worker import tracing
from worker.runtime.context import JobContext
from worker.runtime.job_run import _span_attributes

OTLP_BATCH = 512
"""BatchSpanProcessor's default export batch: the encoder's unit of work."""


class _Keep(SpanExporter):
    """Keeps what it is given: the spans to encode later, without a network."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _per_job(work: Callable[[], object], jobs: int, rounds: int) -> float:
    """Median µs of process CPU per job over `rounds` runs of `work` (which does `jobs` jobs)."""
    runs = []
    for _ in range(rounds):
        started = time.process_time()
        work()
        runs.append((time.process_time() - started) / jobs * 1e6)
    return statistics.median(runs)


def measure(jobs: int, rounds: int) -> list[tuple[str, float]]:
    """(part, µs per job) for each part of a sampled job's tracing."""
    kept = _Keep()
    provider = TracerProvider(resource=tracing.process_resource(tracing.WORKER_SERVICE))
    never = 10**9  # the batch is exported when asked, not while a part is measured
    provider.add_span_processor(
        BatchSpanProcessor(
            kept, max_queue_size=never, schedule_delay_millis=never, max_export_batch_size=never
        )
    )
    tracing.install(provider)
    tracer = tracing.tracer()
    assert tracer is not None
    carriers = [{"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"} for _ in range(jobs)]
    ctx: JobContext = {
        "job_id": "bench-0123abcd-provision_user-1234",
        "job_try": 1,
        "enqueue_time": datetime.now(UTC),
    }

    def extract() -> None:
        for carrier in carriers:
            tracing.extract(carrier)

    def empty_span() -> None:
        for _ in range(jobs):
            with tracing.span(tracer, "process provision_user", kind="consumer"):
                pass

    unsampled = [{"traceparent": carrier["traceparent"][:-2] + "00"} for carrier in carriers]

    def job_span(carriers: Sequence[dict[str, str]] = carriers) -> None:
        for carrier in carriers:
            with tracing.span(
                tracer,
                "process provision_user",
                kind="consumer",
                parent=tracing.extract(carrier),
                attributes=_span_attributes(ctx, "provision_user"),
                fail_on_exception=False,
            ) as span:
                span.set_attribute("job.outcome", "succeeded")

    def encode(spans: Sequence[ReadableSpan]) -> Callable[[], None]:
        def run() -> None:
            for start in range(0, len(spans), OTLP_BATCH):
                encode_spans(spans[start : start + OTLP_BATCH]).SerializeToString()

        return run

    try:
        parts = [("read the traceparent (tracing.extract)", _per_job(extract, jobs, rounds))]
        parts.append(("an empty span: start, make current, end, queue", _per_job(empty_span, jobs, rounds)))
        provider.force_flush()
        empty = kept.spans[-jobs:]
        parts.append(("the job span as the worker makes it", _per_job(job_span, jobs, rounds)))
        provider.force_flush()
        job = kept.spans[-jobs:]
        parts.append(("OTLP encoding of the empty span", _per_job(encode(empty), jobs, rounds)))
        parts.append(("OTLP encoding of the job span", _per_job(encode(job), jobs, rounds)))
        parts.append(
            ("the job span, its trace not sampled", _per_job(lambda: job_span(unsampled), jobs, rounds))
        )
    finally:
        tracing.uninstall()
        provider.shutdown()
    return parts


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print("| part | µs per job |\n|---|---:|")
    for part, micros in measure(args.jobs, args.rounds):
        print(f"| {part} | {micros:.1f} |")


if __name__ == "__main__":
    main()
