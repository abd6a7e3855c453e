"""Bad input, generated: ≥ 1,000 malformed jobs through real Redis to a real worker process.

Every malformed job must end failed on its first try with a clear message and write nothing, while
the same worker keeps serving the good jobs sent between them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from typing import Any, cast

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.ids import RUN_ID
from tests.support.processes import start_worker, stop
from tests.support.queries import EMPTY_TABLES
from tests.support.settings import make_settings
from worker.jobs.payloads import PAYLOADS
from worker.jobs.serialization import deserialize
from worker.passwords.policy import is_argon2id_hash
from worker.settings import Settings

pytestmark = pytest.mark.slow

ROLES = ("admin", "member", "viewer")
PAYLOADS_WANTED = 1000
# Functions about one user (provision_users batches have tests of their own in test_bulk.py).
SINGLE_USER_FUNCTIONS = sorted(name for name, model in PAYLOADS.items() if "email" in model.model_fields)
TALLY: dict[str, int] = {"bad": 0, "good": 0}


def run_async(factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on its own loop in a thread (this module's tests are synchronous)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, factory()).result()


@pytest.fixture(scope="module")
def fuzz_settings(database_url: str) -> Settings:
    return make_settings(database_url, queue_name=f"t{RUN_ID}:fuzz:queue")


@pytest.fixture(scope="module")
def fuzz_redis(fuzz_settings: Settings) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(fuzz_settings.redis_url.get_secret_value())
    try:
        yield client
    finally:
        queue = fuzz_settings.queue_name  # the queue, its failed-job index and records
        keys = [*client.scan_iter(match=f"*t{RUN_ID}*fz*", count=1000), *client.scan_iter(match=f"{queue}*")]
        client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def fuzz_worker(fuzz_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One worker process for the whole module: it must survive everything thrown at it."""
    process = start_worker(
        fuzz_settings, tmp_path_factory.mktemp("fuzz") / "worker.log", poll_delay=0.02, max_jobs=50
    )
    try:
        yield process
    finally:
        stop(process)

        async def truncate() -> None:
            engine = create_async_engine(fuzz_settings.database_url.get_secret_value())
            async with engine.begin() as conn:
                await conn.execute(EMPTY_TABLES)
            await engine.dispose()

        run_async(truncate)


# --- strategies: each draws raw job bytes that are invalid for a stated reason -----------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
not_a_string = json_values.filter(lambda v: not isinstance(v, str))
bad_emails = st.one_of(
    st.text(max_size=60).filter(lambda s: "@" not in s),
    st.builds(lambda s: "x" * 300 + s + "@example.com", st.text(max_size=5)),  # local part too long
    st.builds(lambda n: "a" * n, st.integers(100_000, 200_000)),  # huge
    st.sampled_from(["@example.com", "a@", "a@@example.com", "a b@example.com", "a@example..com"]),
)
bad_roles = st.one_of(
    st.text(max_size=30).filter(lambda s: s not in ROLES),
    not_a_string,
    st.sampled_from(["Admin", "ADMIN", "owner", "root", " admin"]),
)
bad_hashes = st.one_of(
    st.text(max_size=200).filter(lambda s: not is_argon2id_hash(s)),
    not_a_string.filter(lambda v: v is not None),
    st.sampled_from(["hunter2", "$2b$12$" + "a" * 53, "$argon2i$v=19$m=1,t=1,p=1$YQ$YQ"]),
)
field_names = st.text(min_size=1, max_size=20)


def envelope(function: str, kwargs: Any, args: Any = None) -> dict[str, Any]:
    return {
        "f": function,
        "a": [] if args is None else args,
        "k": kwargs,
        "t": None,
        "et": int(time.time() * 1000),
    }


def valid_kwargs(function: str, n: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"email": f"fz-victim-{n}@example.com"}
    if "role" in PAYLOADS[function].model_fields:
        kwargs["role"] = ROLES[n % 3]
    return kwargs


@st.composite
def malformed_job(draw: st.DrawFn) -> tuple[str, bytes]:
    """(what is wrong, the bytes an enqueuer put in arq:job:<id>)."""
    function = draw(st.sampled_from(SINGLE_USER_FUNCTIONS))
    kwargs = valid_kwargs(function, draw(st.integers(0, 10_000)))
    kind = draw(
        st.sampled_from(
            [
                "email",
                "email type",
                "role",
                "hash",
                "missing",
                "extra",
                "positional",
                "function",
                "bytes",
                "nan",
                "not object",
                "kwargs type",
                "envelope",
            ]
        )
    )
    if kind == "email":
        kwargs["email"] = draw(bad_emails)
    elif kind == "email type":
        kwargs["email"] = draw(not_a_string)
    elif kind == "role":
        function, kwargs = "provision_user", {**valid_kwargs("provision_user", 1), "role": draw(bad_roles)}
    elif kind == "hash":
        function, kwargs = (
            "provision_user",
            {**valid_kwargs("provision_user", 2), "password_hash": draw(bad_hashes)},
        )
    elif kind == "missing":
        del kwargs[draw(st.sampled_from(sorted(kwargs)))]
    elif kind == "extra":
        name = draw(field_names.filter(lambda n: n not in PAYLOADS[function].model_fields))
        kwargs[name] = draw(json_values)
    elif kind == "positional":
        return kind, json.dumps(
            envelope(function, kwargs, draw(st.lists(json_values, min_size=1, max_size=3)))
        ).encode()
    elif kind == "function":
        function = draw(st.text(max_size=30).filter(lambda f: f not in PAYLOADS))
    elif kind == "nan":  # Python's json writes these; they are not JSON
        kwargs["email"] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    elif kind == "bytes":
        raw = draw(st.binary(max_size=200).filter(_not_a_json_object))
        return kind, raw
    elif kind == "not object":
        return kind, json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    elif kind == "kwargs type":
        return kind, json.dumps(
            envelope(function, draw(json_values.filter(lambda v: not isinstance(v, dict))))
        ).encode()
    elif kind == "envelope":
        job = envelope(function, kwargs)
        field = draw(st.sampled_from(["f", "a", "et"]))
        job[field] = draw(json_values.filter(partial(_wrong_for, field)))
        return kind, json.dumps(job).encode()
    return kind, json.dumps(envelope(function, kwargs)).encode()


def _not_a_json_object(raw: bytes) -> bool:
    try:
        return not isinstance(json.loads(raw), dict)
    except ValueError:
        return True


def _wrong_for(field: str, value: Any) -> bool:
    if field == "f":
        return not isinstance(value, str)
    if field == "a":
        return not isinstance(value, list)  # a non-empty list is the "positional" case
    return isinstance(value, bool) or not isinstance(value, int)


# What each kind's failure must say; an empty job key reads to ARQ as an expired job.
EXPECTED: dict[str, str | tuple[str, ...]] = {
    "email": "invalid payload: email",
    "email type": "invalid payload: email",
    "role": "invalid payload: role",
    "hash": "invalid payload: password_hash",
    # update_user's only required field is the email; without its one optional field it names none
    "missing": ("Field required", "name at least one field to change"),
    "extra": "Extra inputs are not permitted",
    "positional": "takes keyword arguments only",
    "function": "not found",
    "bytes": ("unable to deserialize job", "job expired"),
    "nan": "is not JSON",
    "not object": "unable to deserialize job",
    "kwargs type": "unable to deserialize job",
    "envelope": "unable to deserialize job",
}


# No shrinking: each example drives a live worker, and a failure's message shows the payload.
@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(malformed_job(), min_size=55, max_size=60))
def test_malformed_jobs_fail_once_clearly_while_good_jobs_keep_flowing(
    batch: list[tuple[str, bytes]], fuzz_settings: Settings, fuzz_redis: sync_redis.Redis, fuzz_worker: Any
) -> None:
    queue = fuzz_settings.queue_name
    sent: list[tuple[str, str, bytes]] = []
    good: list[str] = []
    with fuzz_redis.pipeline(transaction=False) as pipe:
        for position, (kind, raw) in enumerate(batch):
            job_id = f"t{RUN_ID}-fz-{uuid.uuid4().hex}"
            pipe.set(f"arq:job:{job_id}", raw, px=600_000)
            pipe.zadd(queue, {job_id: int(time.time() * 1000)})
            sent.append((job_id, kind, raw))
            if position % 20 == 0:  # good jobs interleaved with the bad
                good_id = f"t{RUN_ID}-fz-good-{uuid.uuid4().hex}"
                email = f"fz-good-{TALLY['good']}@example.com"
                TALLY["good"] += 1
                job = envelope("provision_user", {"email": email, "role": "member"})
                pipe.set(f"arq:job:{good_id}", json.dumps(job), px=600_000)
                pipe.zadd(queue, {good_id: int(time.time() * 1000)})
                good.append(good_id)
        pipe.execute()

    ids = [job_id for job_id, _, _ in sent] + good
    deadline = time.monotonic() + 60
    while True:
        raw_results = cast("list[bytes | None]", fuzz_redis.mget([f"arq:result:{i}" for i in ids]))
        if all(r is not None for r in raw_results) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert fuzz_worker.poll() is None, "the worker died"
    unfinished = [
        (kind, raw[:120]) for (_, kind, raw), r in zip(sent, raw_results, strict=False) if r is None
    ]
    assert all(r is not None for r in raw_results), f"jobs never finished: {unfinished}"

    results = [deserialize(r) for r in raw_results if r is not None]
    for (job_id, kind, raw), result in zip(sent, results, strict=False):
        error = result["r"]
        context = f"{kind}: {raw[:200]!r} -> {error!r}"
        assert result["s"] is False, context
        assert result["t"] == 1, context  # failed on the first try, never retried
        expected = EXPECTED[kind]
        assert any(
            phrase in str(error) for phrase in ((expected,) if isinstance(expected, str) else expected)
        ), context
        assert fuzz_redis.zscore(queue, job_id) is None, context  # off the queue for good
    for result in results[len(sent) :]:
        assert result["s"] is True
        assert result["r"]["status"] == "created"
    TALLY["bad"] += len(sent)


def test_the_fuzzing_covered_enough_and_wrote_only_the_good_users(
    fuzz_settings: Settings, fuzz_worker: Any
) -> None:
    async def emails() -> set[str]:
        engine = create_async_engine(fuzz_settings.database_url.get_secret_value())
        async with engine.connect() as conn:
            rows = await conn.scalars(text("SELECT email FROM users"))
            found = set(rows)
        await engine.dispose()
        return found

    print(
        f"\nfuzz: {TALLY['bad']} malformed jobs failed once each; "
        f"{TALLY['good']} good jobs served between them"
    )
    assert TALLY["bad"] >= PAYLOADS_WANTED
    assert fuzz_worker.poll() is None
    assert run_async(emails) == {f"fz-good-{n}@example.com" for n in range(TALLY["good"])}
