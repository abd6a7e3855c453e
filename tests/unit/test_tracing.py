"""When tracing is on (the OTEL_* rules), what it loads, and what the client puts in the envelope."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import urllib3  # noqa: F401 - imported before the socket block: its import probes IPv6 with a socket
from arq.connections import ArqRedis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.conftest import FAKE_QUEUE
from worker import tracing
from worker.client import ProvisioningClient
from worker.jobs.serialization import TRACE_KEY


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    """Each test starts, and leaves this process, with tracing unconfigured."""
    tracing.shutdown()
    tracing.uninstall()
    yield
    tracing.shutdown()
    tracing.uninstall()


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, []),  # nothing to export to
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp_proto_http"]),  # OTLP/HTTP by default
        ({"OTEL_TRACES_EXPORTER": " OTLP , console "}, ["otlp_proto_http", "console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,otlp"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console,none"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": ""}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp_proto_http"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp_proto_http"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, []),
        # An explicit `none` wins over an endpoint: no exporter was asked for.
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "false"}, ["console"]),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["otlp_proto_grpc"],
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            ["otlp_proto_http"],
        ),
    ],
)
def test_tracing_is_on_only_when_an_exporter_or_an_otlp_endpoint_is_set(
    environ: dict[str, str], names: list[str]
) -> None:
    assert tracing.exporter_names(environ) == names


def test_an_unknown_otlp_protocol_is_named() -> None:
    with pytest.raises(tracing.TracingConfigError, match="'http/json' is not one of"):
        tracing.exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_off_by_default_imports_nothing_and_traces_nothing() -> None:
    assert tracing.configure("svc", {}) is False
    assert tracing.tracer() is None
    assert tracing.inject() is None


@pytest.mark.parametrize(
    ("name", "exporter"), [("console", "ConsoleSpanExporter"), ("otlp", "OTLPSpanExporter")]
)
def test_exporters_are_loaded_by_their_entry_points(name: str, exporter: str) -> None:
    environ = {"OTEL_TRACES_EXPORTER": name, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    assert tracing.configure("provisioning-test", environ) is True
    assert tracing.tracer() is not None
    provider = tracing._state.provider
    assert isinstance(provider, TracerProvider)
    processors = provider._active_span_processor._span_processors
    assert [type(p._batch_processor._exporter).__name__ for p in processors] == [exporter]  # type: ignore[attr-defined]
    assert provider.resource.attributes["service.name"] == "provisioning-test"
    tracing.shutdown()
    assert tracing.tracer() is None


def test_otel_service_name_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "hr-provisioning")
    assert tracing.configure("provisioning-worker", {"OTEL_TRACES_EXPORTER": "console"}) is True
    provider = tracing._state.provider
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "hr-provisioning"


def test_an_exporter_nobody_installed_leaves_tracing_off_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="worker.tracing"):
        assert tracing.configure("svc", {"OTEL_TRACES_EXPORTER": "zipkin_json"}) is False
    assert tracing.tracer() is None
    (record,) = caplog.records
    assert "tracing is off: no trace exporter 'zipkin_json' is installed" in record.getMessage()
    assert "console" in record.getMessage()
    assert "otlp_proto_http" in record.getMessage()


def test_configure_keeps_its_first_answer_until_shutdown() -> None:
    assert tracing.configure("svc", {}) is False
    assert tracing.configure("svc", {"OTEL_TRACES_EXPORTER": "console"}) is False
    tracing.shutdown()
    assert tracing.configure("svc", {"OTEL_TRACES_EXPORTER": "console"}) is True


def test_an_installed_provider_outlives_configure_and_shutdown() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=open("/dev/null", "w"))))  # noqa: SIM115
    tracing.install(provider)
    assert tracing.configure("svc", {}) is True  # the embedding program's provider stands
    tracing.shutdown()
    assert tracing.tracer() is not None
    tracing.uninstall()
    assert tracing.tracer() is None
    provider.shutdown()


def test_a_malformed_traceparent_starts_a_trace_of_its_own(exported: InMemorySpanExporter) -> None:
    tracer = tracing.tracer()
    assert tracer is not None
    with tracing.span(tracer, "process x", parent=tracing.extract({"traceparent": "00-garbage-01"})):
        pass
    (span,) = exported.get_finished_spans()
    assert span.parent is None
    assert span.context.is_valid


def test_extract_refuses_what_is_not_a_trace_context() -> None:
    assert tracing.extract(None) is None
    assert tracing.extract({}) is None
    assert tracing.span_context({"traceparent": "garbage"}) is None
    zero_trace = "00-00000000000000000000000000000000-b7ad6b7169203331-01"
    assert tracing.span_context({"traceparent": zero_trace}) is None
    valid = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    context = tracing.span_context(valid)
    assert context is not None
    assert f"{context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"},
        {"traceparent": "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"},
        {"traceparent": " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"},
        {"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"},
        {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n"},
        {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "vendor=x,o=1",
        },
    ],
)
def test_extract_reads_a_trace_context_as_the_w3c_propagator_does(carrier: dict[str, str]) -> None:
    """The direct reading of the usual `traceparent` gives the propagator's answer, and leaves every
    other form (case, spaces, versions, zero ids, a tracestate) to the propagator itself."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = tracing.extract(carrier)
    assert context is not None
    ours = trace.get_current_span(context).get_span_context()
    theirs = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    assert ours == theirs
    assert (ours.is_remote, ours.trace_flags, ours.trace_state) == (
        theirs.is_remote,
        theirs.trace_flags,
        theirs.trace_state,
    )


def test_the_resource_hashes_as_the_sdk_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resource is hashed once per process, not once per exported span, to the SDK's value."""
    from opentelemetry.sdk.resources import Resource

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    resource = tracing.process_resource(tracing.WORKER_SERVICE)
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource == plain
    assert hash(resource) == hash(plain)
    assert {resource: 1}[plain] == 1  # the encoder's grouping finds it under either
    assert resource.attributes["service.name"] == tracing.WORKER_SERVICE
    assert resource.attributes["deployment.environment"] == "test"
    computed = []
    sdk_hash = Resource.__hash__

    def counted(self: Resource) -> int:
        computed.append(self)
        return sdk_hash(self)

    monkeypatch.setattr(Resource, "__hash__", counted)
    fresh = tracing.process_resource(tracing.WORKER_SERVICE)
    assert hash(fresh) == hash(fresh) == hash(plain)
    assert len(computed) == 2  # once for `fresh`, once for `plain`


async def test_the_client_puts_the_enqueue_span_s_context_in_the_envelope(
    fake_redis: ArqRedis, exported: InMemorySpanExporter
) -> None:
    client = ProvisioningClient(fake_redis, queue_name=FAKE_QUEUE)

    await client.deactivate_user(email="leaver@example.com", job_id="traced")

    stored = json.loads(await fake_redis.get("arq:job:traced"))
    (send,) = exported.get_finished_spans()
    assert send.name == "send deactivate_user"
    trace_id, span_id = f"{send.context.trace_id:032x}", f"{send.context.span_id:016x}"
    assert stored[TRACE_KEY]["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert set(stored["k"]) == {"email", "as_of"}  # never an argument: old workers refuse unknown ones
    assert dict(send.attributes or {}) == {
        "messaging.message.id": "traced",
        "job.function": "deactivate_user",
        "messaging.destination.name": FAKE_QUEUE,
    }


async def test_with_tracing_off_the_envelope_has_no_trace_key(fake_redis: ArqRedis) -> None:
    tracing.configure("svc", {})
    client = ProvisioningClient(fake_redis, queue_name=FAKE_QUEUE)

    await client.deactivate_user(email="leaver@example.com", job_id="plain")

    assert set(json.loads(await fake_redis.get("arq:job:plain"))) == {"t", "f", "a", "k", "et"}


def _fresh_python(script: str) -> str:
    """What `script` prints in a new interpreter, with no OTEL_* variable set."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_with_tracing_off_no_process_of_ours_imports_opentelemetry() -> None:
    script = (
        "import sys, worker.main, worker.scim.app, worker.cli.commands\n"
        "from worker import tracing\n"
        "assert tracing.configure('provisioning-worker') is False\n"
        "assert tracing.tracer() is None\n"
        "print(sorted(name for name in sys.modules if name.startswith('opentelemetry')))\n"
    )
    assert _fresh_python(script) == "[]"


def test_a_client_in_another_program_uses_that_program_s_tracer_provider() -> None:
    script = (
        "from opentelemetry import trace\n"
        "from worker import tracing\n"
        "assert tracing.tracer() is None  # OpenTelemetry imported, no SDK provider set up\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "tracer = tracing.tracer()\n"
        "assert tracer is not None\n"
        "with tracing.span(tracer, 'request') as span:\n"
        "    carrier = tracing.inject()\n"
        "assert carrier is not None\n"
        "print(carrier['traceparent'].split('-')[2] == f'{span.get_span_context().span_id:016x}')\n"
    )
    assert _fresh_python(script) == "True"
