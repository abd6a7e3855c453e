"""The SCIM service traced: a request's server span continues the caller's trace, and the jobs it sends
(then their tries in the worker) are its children; no span names the user."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.integration.scim.conftest import Scim, new_email, user_body
from tests.integration.test_tracing import everything_said

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


async def test_a_create_continues_the_callers_trace_through_its_job(
    exported: InMemorySpanExporter, scim: Scim
) -> None:
    email = new_email("traced")
    response = await scim.client.post(
        "Users", json=user_body(email), headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    assert response.status_code == 201, response.text

    spans = exported.get_finished_spans()
    (server,) = [span for span in spans if span.kind is SpanKind.SERVER]
    assert server.name == "POST /scim/v2/Users"
    assert f"{server.context.trace_id:032x}" == CALLER_TRACE
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/scim/v2/Users",
        "http.response.status_code": 201,
    }
    (send,) = [span for span in spans if span.name == "send provision_user"]
    assert send.parent is not None
    assert send.parent.span_id == server.context.span_id
    (process,) = [span for span in spans if span.name == "process provision_user"]
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert email.split("@")[0] not in everything_said(spans)
