"""OpenTelemetry tracing: off unless the standard `OTEL_*` variables turn it on (docs/jobs.md, "Tracing").

On when `OTEL_TRACES_EXPORTER` names an exporter other than `none`, or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true`
turns it off. Exporters are loaded by their entry points (group `opentelemetry_traces_exporter`):
`otlp` (OTLP over HTTP unless `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL` says `grpc`), `console`, or any
other an installed package provides. The SDK reads the rest itself (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, the exporter's own variables).

With tracing off nothing of OpenTelemetry is imported, and `tracer()` is one global read: the worker's
hot path pays nothing else. Only W3C Trace Context (`traceparent`, `tracestate`) is propagated, never
baggage, which could carry anything. Spans never hold emails, passwords or hashes: job ids, function
names, outcomes and error types (never error messages, which can quote a payload) are what they say.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import opentelemetry.context as otel_context
    import opentelemetry.trace as otel_trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanContext, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.interfaces import ExceptionContext
else:
    # Bound by `_import_api` the first time a span is made, so that with tracing off nothing of
    # OpenTelemetry is imported, and with it on the hot path pays no import statement per call.
    otel_context = otel_trace = None

logger = logging.getLogger(__name__)

EXPORTER_GROUP = "opentelemetry_traces_exporter"
"""The entry point group OpenTelemetry's span exporters register under."""
OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
DEFAULT_OTLP_PROTOCOL = "http/protobuf"
"""The specification's default; this project installs the OTLP/HTTP exporter only."""

WORKER_SERVICE = "provisioning-worker"
CLI_SERVICE = "provisioning-cli"
SCIM_SERVICE = "provisioning-scim"
"""Our processes' `service.name` in traces, unless OTEL_SERVICE_NAME (or the resource) names another."""

Kind = Literal["producer", "consumer", "server", "internal"]
_propagator: TraceContextTextMapPropagator | None = None
_KINDS: dict[str, otel_trace.SpanKind] = {}

# W3C Trace Context's common form, version 00 with nothing around it, read without the propagator's
# generality; anything else (other versions, spaces, zero ids) is left to the propagator.
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _import_api() -> TraceContextTextMapPropagator:
    """Import OpenTelemetry's API into this module (once); returns the W3C propagator."""
    global otel_context, otel_trace, _propagator
    if _propagator is None:
        import opentelemetry.context as otel_context
        import opentelemetry.trace as otel_trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _KINDS.update((kind.name.lower(), kind) for kind in otel_trace.SpanKind)
        _propagator = TraceContextTextMapPropagator()
    return _propagator


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for something this installation cannot do; the message names the fix."""


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The entry point names of the trace exporters `environ` asks for; [] means tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if named:
        wanted = [name.strip().lower() for name in named.split(",")]
        # An explicit `none` means no exporter, whatever endpoint is set.
        names = [name for name in wanted if name and name != "none"]
    elif any(environ.get(variable, "").strip() for variable in OTLP_ENDPOINTS):
        names = ["otlp"]
    else:
        return []
    return [_entry_point_name(name, environ) for name in dict.fromkeys(names)]


def _entry_point_name(name: str, environ: Mapping[str, str]) -> str:
    if name != "otlp":
        return name
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        or DEFAULT_OTLP_PROTOCOL
    )
    if protocol not in OTLP_BY_PROTOCOL:
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} is not one of {', '.join(OTLP_BY_PROTOCOL)}: "
            "fix OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL"
        )
    return OTLP_BY_PROTOCOL[protocol]


class _State:
    """This process's tracing: unset (a library in someone else's process), off, or on."""

    configured = False
    owned = False  # configured from the environment (by `configure`), not handed a provider (`install`)
    provider: TracerProvider | None = None
    tracer: Tracer | None = None
    instrumented: Engine | None = None


_state = _State()


def configure(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on for this process if the OTEL_* variables ask for it; True if it is on.

    For our own processes (worker, CLI, SCIM service). Idempotent: a second call keeps the first
    answer. A configuration that cannot work is logged, and tracing stays off: a typo in an
    observability variable must not stop users from being provisioned.
    """
    if _state.configured:
        return _state.tracer is not None
    environ = os.environ if environ is None else environ
    _state.configured = _state.owned = True
    try:
        names = exporter_names(environ)
        if not names:
            return False
        provider = _provider(service_name, names)
    except Exception as error:
        logger.error("tracing is off: %s", error)  # the message names the fix; no traceback
        return False
    install(provider)
    _state.owned = True  # not set as OpenTelemetry's global provider: `shutdown` undoes all of it
    return True


def _provider(service_name: str, names: Sequence[str]) -> TracerProvider:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    exporters: list[SpanExporter] = []
    for name in names:
        found = entry_points(group=EXPORTER_GROUP, name=name)
        if not found:
            available = sorted({point.name for point in entry_points(group=EXPORTER_GROUP)})
            raise TracingConfigError(
                f"no trace exporter {name!r} is installed (OTEL_TRACES_EXPORTER; installed: "
                f"{', '.join(available)}): fix the variable or install the exporter's package"
            )
        exporter = next(iter(found)).load()()
        if not isinstance(exporter, SpanExporter):
            raise TracingConfigError(f"entry point {name!r} of {EXPORTER_GROUP} is not a span exporter")
        exporters.append(exporter)

    resource = process_resource(service_name)
    # The sampler from OTEL_TRACES_SAMPLER; no metrics of the SDK's own (nothing would read them).
    provider = TracerProvider(resource=resource, meter_provider=NoOpMeterProvider())
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* settings
    return provider


def process_resource(service_name: str) -> Resource:
    """This process's resource: what OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say, and
    `service_name` unless they name a service."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    class HashedOnce(Resource):
        """The SDK's Resource, hashed once: the OTLP encoder groups every span by its resource, and
        `Resource.__hash__` JSON-encodes all the attributes each time (a third of encoding a span)."""

        @functools.cached_property
        def _hash(self) -> int:
            return super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    return HashedOnce(resource.attributes, resource.schema_url)  # immutable: its hash never changes


def install(provider: TracerProvider) -> None:
    """Trace with `provider` in this process, whatever the environment says (an embedding program,
    tests); `configure` and `shutdown` then leave it be, until `uninstall`."""
    _state.configured, _state.owned = True, False
    _state.provider = provider
    _state.tracer = provider.get_tracer("worker")


def uninstall() -> None:
    """Stop tracing with the provider `install` was given (not shut down: it is the caller's)."""
    uninstrument_engine()
    _state.configured, _state.owned, _state.provider, _state.tracer = False, False, None, None


def tracer() -> Tracer | None:
    """The tracer to use, or None when tracing is off.

    Unconfigured (`ProvisioningClient` inside another application), the application's own global
    tracer provider is used if it installed an SDK one; if it never imported OpenTelemetry, None.
    """
    if _state.configured:
        return _state.tracer
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("worker")


def shutdown() -> None:
    """Stop the SQL instrumentation; if `configure` set tracing up, export what is left, stop the
    exporters and go back to unconfigured (the next `configure` reads the environment again)."""
    uninstrument_engine()
    if not _state.owned:
        return
    provider = _state.provider
    _state.configured, _state.owned, _state.provider, _state.tracer = False, False, None, None
    if provider is not None:
        provider.shutdown()


def inject() -> dict[str, str] | None:
    """The current span's context as W3C fields (`traceparent`, `tracestate`), or None if there is none."""
    if tracer() is None:
        return None
    carrier: dict[str, str] = {}
    _import_api().inject(carrier)
    return carrier or None


def extract(carrier: Mapping[str, str] | None) -> Context | None:
    """The context W3C fields describe (a remote parent), None without any; a malformed one gives a
    context with no valid span, under which a span starts a trace of its own."""
    if not carrier:
        return None
    propagator = _import_api()
    parent = carrier.get("traceparent")
    # The form every job carries, read directly (a fifth of the propagator's time); the same answer.
    if len(carrier) == 1 and parent is not None and (found := _TRACEPARENT_00.fullmatch(parent)):
        trace_id, span_id = int(found[1], 16), int(found[2], 16)
        if trace_id and span_id:
            remote = otel_trace.SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=otel_trace.TraceFlags(int(found[3], 16))
            )
            return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(remote))
    return propagator.extract(carrier)


def span_context(carrier: Mapping[str, str] | None) -> SpanContext | None:
    """The valid span context W3C fields name (for a link), or None."""
    context = extract(carrier)
    if context is None:
        return None
    found = otel_trace.get_current_span(context).get_span_context()
    return found if found.is_valid else None


def current_span_context() -> SpanContext | None:
    """The current span's context, if there is a valid one (to parent or link work done elsewhere)."""
    _import_api()
    found = otel_trace.get_current_span().get_span_context()
    return found if found.is_valid else None


@contextmanager
def span(
    tracer: Tracer,
    name: str,
    *,
    kind: Kind = "internal",
    parent: Context | SpanContext | None = None,
    links: Sequence[SpanContext] = (),
    attributes: Mapping[str, str | int | float | bool] | None = None,
    fail_on_exception: bool = True,
) -> Iterator[Span]:
    """A current span; an exception that leaves it marks it failed with its type only (unless
    `fail_on_exception` is False: the caller says how it ended).

    Never the exception's text or traceback: a message may quote a job's arguments (an email).
    Started and made current by hand, not with `start_as_current_span`: a job's span is on the
    worker's hot path, and its nested context managers cost a third more.
    """
    _import_api()
    if isinstance(parent, otel_trace.SpanContext):
        parent = otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(parent))
    current = tracer.start_span(
        name,
        context=parent,
        kind=_KINDS[kind],
        links=[otel_trace.Link(context) for context in links] if links else None,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )
    token = otel_context.attach(otel_trace.set_span_in_context(current, parent))
    try:
        yield current
    except BaseException as error:
        if fail_on_exception:
            mark_failed(current, type(error).__name__)
        raise
    finally:
        otel_context.detach(token)
        current.end()


def mark_failed(span: Span, error_type: str) -> None:
    """Mark `span` failed with `error_type` (a class name: never a message)."""
    _import_api()
    span.set_attribute("error.type", error_type)
    span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, error_type))


def instrument_engine(engine: Engine) -> None:
    """Trace `engine`'s SQL with opentelemetry-instrumentation-sqlalchemy: a span per statement.

    Give it the sync engine of an `AsyncEngine` (`engine.sync_engine`), never asyncpg as well (that
    would trace every statement twice). Statements are recorded without their parameters (this
    library never captures them); PostgreSQL's error text, which the library would put into the
    span's status and whose DETAIL can quote a row (an email), gives way to the error's type.
    """
    if _state.provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import engine as instrumented
    from sqlalchemy import event

    uninstrument_engine()
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:  # by someone else in this process
        instrumentor.uninstrument()
    # Its declared range stops below SQLAlchemy 2.1; the engine events it uses are the same in 2.1
    # (tests/integration/test_tracing.py holds it to that).
    instrumentor.instrument(engine=engine, tracer_provider=_state.provider, skip_dep_check=True)
    # Ours must run before the library's own handler; `insert=True` is not honoured for this
    # event, so the library's is taken off and put back after ours (its uninstrument removes it).
    verbose = getattr(instrumented, "_handle_error", None)
    if verbose is not None and event.contains(engine, "handle_error", verbose):
        event.remove(engine, "handle_error", verbose)
        event.listen(engine, "handle_error", _sql_failed)
        event.listen(engine, "handle_error", verbose)
    else:
        event.listen(engine, "handle_error", _sql_failed)
    _state.instrumented = engine


def uninstrument_engine() -> None:
    """Stop tracing the engine `instrument_engine` traced."""
    engine, _state.instrumented = _state.instrumented, None
    if engine is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from sqlalchemy import event

    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    if event.contains(engine, "handle_error", _sql_failed):
        event.remove(engine, "handle_error", _sql_failed)


def _sql_failed(context: ExceptionContext) -> None:
    """End a failed statement's span with the error's type, not its text; the library's own handler,
    which runs next, then finds no span to end."""
    execution = context.execution_context
    statement = getattr(execution, "_otel_span", None)
    if statement is None:
        return
    execution._otel_span = None  # type: ignore[union-attr]
    error = context.original_exception
    # The driver's own error (asyncpg's UniqueViolationError…) says more than the DB-API wrapper's.
    mark_failed(statement, type(error.__cause__ or error).__name__)
    statement.end()
