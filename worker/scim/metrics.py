"""Prometheus metrics of the SCIM service, on the worker's registry (served on METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from worker.runtime.metrics import REGISTRY

REQUESTS = Counter(
    "scim_requests",
    "SCIM requests answered, by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "scim_request_seconds",
    "Time to answer a SCIM request, by method and route template",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and observe its duration."""
    REQUESTS.labels(method, route, str(status)).inc()
    REQUEST_SECONDS.labels(method, route).observe(seconds)
