"""Tracing on in the test's own process, every finished span kept in memory (the `exported` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from worker import tracing


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process (set up before any app or worker the test starts), spans in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "tests"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()
