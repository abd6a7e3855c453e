"""Last intent wins, end to end: random command sequences, run in shuffled order by real workers.

Two long-lived worker processes (MAX_JOBS 200, group commit on, TOMBSTONE_RETENTION 20 s) reach
PostgreSQL through a TCP proxy that this test cuts now and then, so that jobs in flight fail for
real and are retried. Some jobs are delivered twice (re-queued after they finished, as a crash
would). An example is one to three phases of jobs; between phases (and after the last) the test
runs the housekeeping in-process against the same database: intent expiry (window 0), `erase` of
some people, and the tombstone purge with the workers' retention. The tables are emptied before
each example, while the workers are idle.

What the examples hold:

- a pool of people, each with several spellings of one identity: `Ivan@`/`IVAN@`/`ivan@X`,
  `Éloïse@`/`éloïse@`/decomposed `É`, `ada@bücher.example`/`ada@xn--bcher-kva.example`, and
  look-alikes that must stay apart (`İvan@`, dotless `\u0131van@`, `maße@` vs `MASSE@`, `ΟΔΥΣΣΕΥΣ@` vs
  `οδυσσευσ@`), plus plain ASCII people, so that groups and batches of both workers hold several
  people at once and contend for them;
- stamps drawn from a few values, so that equal `as_of` values are common and job ids (drawn
  too: their byte order) break the ties; stamps 2 s inside the window's edge, 1.5 s outside it
  (refused: the job fails with StampRefused, or a batch rejects the entry, and nothing changes),
  and in some phases the test waits until the edge stamps have left the window before the purge;
- single-user jobs and `provision_users` batches of several people, entries with their own
  `as_of`; password hashes, and passwords sent sealed (the stored hash must verify them);
  external ids;
- `update_user` (about one job in eight) with a random non-empty subset of role, active, external
  id and password (hash or sealed), mostly for people the example provisions somewhere: one that
  runs before its user's provision waits (NotProvisionedYet) and is tried again until it lands;
  one whose person has no user when the phase settles gives up (GaveUp), a failed job that must
  have changed nothing, and the model leaves it out.

After each phase, the whole `users` table (external ids too) must equal the model's live users
(no extra row), each
job's result must say what the model says (refused or not, a batch's rejected entries), and the
audit trail must match (`tests.support.ordering_model.audit_problems`): one row per accepted
command and none for a refused one (an update_user: one unless it ended unchanged or gave up),
each row consistent with its status and command, the rows of
a person chaining from no user to the user as it is. After the housekeeping, the reported intents
must be the person's newest set_user_role while it has no user, `erase` must remove exactly the
state row and audit rows the model predicts, and `user_states` / `erased_stamps` must hold exactly
the rows the purge must keep, each with the newest stamp the model knows. No retry of the whole
run may be a deadlock retry (the workers' `"deadlock": true` log field).

Examples: the `ordering-ci` Hypothesis profile (300, the default, what `make test` runs); set
ORDERING_EXAMPLES=n for a quicker run. The seed is printed; ORDERING_SEED=n replays a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import unicodedata
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from arq.connections import ArqRedis
from arq.jobs import serialize_job
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.ids import RUN_ID, new_id
from tests.support.ordering_model import (
    FUNCTIONS,
    PROVISIONS,
    WITH_ROLE,
    AuditRow,
    Command,
    Erasure,
    Password,
    People,
    Stamp,
    UserRow,
    audit_problems,
    final_states,
    password_matches,
    person_key,
)
from tests.support.processes import start_worker, stop
from tests.support.settings import make_settings
from tests.support.tcp_proxy import TcpProxy, free_port
from worker.client import ProvisioningClient, connect_redis
from worker.db.session import SessionFactory, create_engine, create_session_factory
from worker.jobs.errors import JobFailed
from worker.jobs.sealing import new_seal_key, seal_password
from worker.jobs.serialization import deserialize, serialize
from worker.jobs.stamps import now_micros
from worker.passwords.policy import hash_password
from worker.repositories.user import ExpiredIntent
from worker.services import maintenance
from worker.services.erasure import ErasureKeys
from worker.services.unit_of_work import SqlAlchemyUnitOfWork
from worker.settings import Settings

pytestmark = pytest.mark.slow

T = TypeVar("T")
ROLES = ("admin", "member", "viewer")
PASSWORDS = ("first of two", "second of two")
HASHES = tuple(hash_password(password) for password in PASSWORDS)
EXTERNAL_IDS = ("00u-a", "00U-A", "00u-b")  # compared case-exact: three ids

# The people: each a tuple of spellings of one identity; no two share an identity key.
POOL: tuple[tuple[str, ...], ...] = (
    ("Ivan@x.example", "IVAN@x.example", "ivan@X.example"),
    ("İvan@x.example",),  # U+0130: not Ivan
    ("\u0131van@x.example",),  # U+0131 dotless i: not ivan
    ("Éloïse@x.example", "éloïse@x.example", unicodedata.normalize("NFD", "Éloïse@x.example")),
    ("ada@bücher.example", "ada@xn--bcher-kva.example", "ADA@BÜCHER.example"),
    ("maße@x.example",),
    ("MASSE@x.example", "masse@x.example"),  # not maße
    ("ΟΔΥΣΣΕΥΣ@x.example",),  # keys to οδυσσευς (final sigma)
    ("οδυσσευσ@x.example",),
    *((f"p{n}@example.com", f"P{n}@Example.COM") for n in range(8)),
)
assert all(len({person_key(spelling) for spelling in spellings}) == 1 for spellings in POOL)
assert len({person_key(spellings[0]) for spellings in POOL}) == len(POOL)

# The window, in µs: the workers run with TOMBSTONE_RETENTION = RETENTION s.
SECOND = 1_000_000
RETENTION = 20
RETENTION_US = RETENTION * SECOND
OUT_US = 1_500_000  # "out" stamps: this far outside the window when sent
EDGE_US = 2 * SECOND  # "edge" stamps: this far inside the window when sent
LEVELS_US = 8 * SECOND  # "level" stamps: 8 values a second apart, the oldest this long before the example
MARGIN_IN_US = 1_500_000  # a stamp is sent as accepted only if this far inside (time to run, retries)
MARGIN_OUT_US = 500_000  # and as refused only if this far outside
AGE_US = 2_600_000  # after a phase with edge stamps, wait this long from its start before the purge
PURGE_MARGIN_US = 500_000  # stamps this close to the purge's cut-off may be purged or kept

# Hypothesis: `ordering-ci` is what `make test` runs; ORDERING_EXAMPLES=n picks `ordering-dev`.
hypothesis_settings.register_profile(
    "ordering-ci",
    max_examples=300,
    deadline=timedelta(seconds=60),
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
hypothesis_settings.register_profile(
    "ordering-dev",
    hypothesis_settings.get_profile("ordering-ci"),
    max_examples=int(os.environ.get("ORDERING_EXAMPLES", "20")),
)
PROFILE_NAME = "ordering-dev" if os.environ.get("ORDERING_EXAMPLES") else "ordering-ci"
PROFILE = hypothesis_settings.get_profile(PROFILE_NAME)
SEED = int(os.environ.get("ORDERING_SEED") or random.SystemRandom().randrange(2**32))

TALLY: Counter[str] = Counter()
LOGS: list[Path] = []
METRICS_PORTS: list[int] = []


class Loop:
    """An event loop on a thread of its own: the proxy and clients live across examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 180) -> T:
        """Run `coroutine` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass(repr=False)
class Rig:
    """What every example uses: the workers' proxy to PostgreSQL, Redis, and direct sessions."""

    loop: Loop
    settings: Settings
    proxy: TcpProxy
    redis: ArqRedis
    engine: AsyncEngine
    sessions: SessionFactory
    erasure: ErasureKeys
    seal_key: str

    def __repr__(self) -> str:
        return f"Rig(queue {self.settings.queue_name!r})"


@pytest.fixture(scope="module")
def rig(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    print(
        f"\nordering: Hypothesis profile {PROFILE_NAME} ({PROFILE.max_examples} examples), "
        f"seed {SEED} (ORDERING_SEED={SEED} replays it)"
    )
    loop = Loop()
    proxy = TcpProxy(make_url(database_url).port or 5432)
    loop.run(proxy.start())
    through_proxy = make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)
    seal_key = new_seal_key()
    window = {"tombstone_retention": RETENTION, "failed_job_retention": RETENTION // 2}
    worker_settings = make_settings(
        through_proxy, queue_name=f"t{RUN_ID}:ordering:queue", seal_keys=seal_key, **window
    )

    async def connect() -> tuple[ArqRedis, AsyncEngine]:
        return await connect_redis(worker_settings), create_engine(make_settings(database_url))

    redis, engine = loop.run(connect())
    log = tmp_path_factory.mktemp("ordering") / "worker.log"
    LOGS.append(log)
    options = {
        "max_jobs": 200,
        "poll_delay": 0.005,
        # an update_user waiting for its user tries again every 10-100 ms, for ~0.4 s (max_tries);
        # one whose person gets no user holds its phase up that long before it gives up
        "retry_base_delay": 0.02,
        "retry_max_delay": 0.1,
        "max_tries": 8,
        "db_pool_size": 10,
        "group_commit": True,
        "seal_keys": seal_key,
        **window,
    }
    ports = [free_port() for _ in range(2)]
    METRICS_PORTS.extend(ports)
    workers = [start_worker(worker_settings, log, metrics_port=port, **options) for port in ports]
    erasure = ErasureKeys(worker_settings.erasure_key_list)
    try:
        yield Rig(
            loop, worker_settings, proxy, redis, engine, create_session_factory(engine), erasure, seal_key
        )
    finally:
        for worker in workers:
            stop(worker)

        async def cleanup() -> None:
            keys = [key async for key in redis.scan_iter(match=f"*t{RUN_ID}*", count=1000)]
            if keys:
                await redis.delete(*keys)
            await redis.aclose(close_connection_pool=True)
            await _truncate(engine)
            await engine.dispose()
            await proxy.stop()

        loop.run(cleanup())
        loop.close()
    assert all(worker.returncode == 0 for worker in workers), f"a worker exited badly; see {log}"


# --- What Hypothesis draws: abstract jobs, made concrete against the clock when a phase is sent.


@dataclass(frozen=True)
class StampDraw:
    """An as_of: `out`/`edge` of the window when sent, one of 8 `level`s (seconds apart, before the
    example began), `fresh` (just before the phase), or the `same` as an earlier command's."""

    kind: str
    index: int
    micro: int  # µs added (not to `same`): equal and adjacent as_of values


@dataclass(frozen=True)
class EntryDraw:
    """One person's part of a job."""

    person: int
    spelling: int
    role: str | None
    password: tuple[str, int] | None  # ("hash" | "sealed", which)
    stamp: StampDraw | None  # a batch entry's own as_of
    active: bool | None = None  # update_user's
    external_id: str | None = None


@dataclass(frozen=True)
class JobDraw:
    function: str
    entries: tuple[EntryDraw, ...]
    stamp: StampDraw
    token: int  # the job id's first characters: its place among equal as_of values


@dataclass(frozen=True)
class PhaseDraw:
    jobs: tuple[JobDraw, ...]
    order: tuple[int, ...]  # the order the jobs are queued in
    redelivered: frozenset[int]
    cut: bool
    aged: bool  # has edge stamps, and waits for them to leave the window before the purge
    erase: tuple[tuple[int, int], ...]  # (person, spelling) to erase after the phase


def _stamps(aged: bool) -> st.SearchStrategy[StampDraw]:
    if aged:  # mostly edge stamps: people whose every stamp is one get purged
        kinds = ["edge"] * 6 + ["level", "fresh", "same", "same", "out"]
    else:
        kinds = ["level"] * 4 + ["fresh"] * 2 + ["same"] * 3 + ["out"]
    return st.builds(StampDraw, st.sampled_from(kinds), st.integers(0, 63), st.sampled_from((0, 0, 1)))


SINGLE_PASSWORDS = (None, None, ("hash", 0), ("hash", 1), ("sealed", 0), ("sealed", 1))


@st.composite
def _entries(draw: st.DrawFn, person: int, function: str, aged: bool) -> EntryDraw:
    spelling = draw(st.integers(0, 2))
    if function == "update_user":  # a non-empty subset of the fields it may name
        names = draw(st.sampled_from(range(1, 16)))
        return EntryDraw(
            person,
            spelling,
            role=draw(st.sampled_from(ROLES)) if names & 1 else None,
            password=draw(st.sampled_from(SINGLE_PASSWORDS[2:])) if names & 2 else None,
            stamp=None,
            active=draw(st.booleans()) if names & 4 else None,
            external_id=draw(st.sampled_from(EXTERNAL_IDS)) if names & 8 else None,
        )
    role = draw(st.sampled_from(ROLES)) if function in WITH_ROLE else None
    password: tuple[str, int] | None = None
    if function == "provision_user":
        password = draw(st.sampled_from(SINGLE_PASSWORDS))
    elif function == "provision_users":
        password = draw(st.sampled_from((None, ("hash", 0), ("hash", 1))))
    own = draw(st.one_of(st.none(), _stamps(aged))) if function == "provision_users" else None
    external_id = None
    if function in PROVISIONS:
        external_id = draw(st.sampled_from((None, None, None, *EXTERNAL_IDS)))
    return EntryDraw(person, spelling, role, password, own, external_id=external_id)


@st.composite
def _jobs(draw: st.DrawFn, people: list[int], aged: bool) -> JobDraw:
    function = draw(st.sampled_from((*FUNCTIONS, "provision_user", "delete_user")))
    if function == "provision_users":
        chosen = draw(
            st.lists(st.sampled_from(people), min_size=1, max_size=min(5, len(people)), unique=True)
        )
    else:
        chosen = [draw(st.sampled_from(people))]
    entries = tuple(draw(_entries(person, function, aged)) for person in chosen)
    return JobDraw(function, entries, draw(_stamps(aged)), draw(st.integers(0, 9999)))


@st.composite
def examples(draw: st.DrawFn) -> tuple[PhaseDraw, ...]:
    """1-3 phases of 1-40 jobs each about some of the pool's people; some examples age a phase."""
    size = draw(st.integers(1, len(POOL)))
    people = list(draw(st.permutations(range(len(POOL))))[:size])
    count = draw(st.integers(1, 3))
    aged_phase = draw(st.integers(0, count - 1)) if draw(st.integers(0, 4)) == 4 else None
    phases = []
    provisioned: set[int] = set()
    for phase in range(count):
        aged = phase == aged_phase
        size = draw(st.integers(1, 40))
        jobs = draw(st.lists(_jobs(people, aged), min_size=size, max_size=size))
        # Updates mostly for people the example provisions (in this phase or an earlier one): one
        # whose person has no user when the phase settles gives up, after ~1 s of tries.
        provisioned |= {entry.person for job in jobs if job.function in PROVISIONS for entry in job.entries}
        for position, job in enumerate(jobs):
            if job.function == "update_user" and provisioned and draw(st.integers(0, 7)):
                moved = replace(job.entries[0], person=draw(st.sampled_from(sorted(provisioned))))
                jobs[position] = replace(job, entries=(moved,))
        named = sorted({entry.person for job in jobs for entry in job.entries})  # people with a history
        erase = draw(st.lists(st.tuples(st.sampled_from(named), st.integers(0, 2)), max_size=3))
        phases.append(
            PhaseDraw(
                jobs=tuple(jobs),
                order=tuple(draw(st.permutations(range(len(jobs))))),
                redelivered=frozenset(draw(st.lists(st.integers(0, len(jobs) - 1), max_size=3))),
                cut=draw(st.integers(0, 3)) == 0,
                aged=aged,
                erase=tuple(erase),
            )
        )
    return tuple(phases)


def _spelled(person: int, spelling: int) -> str:
    return POOL[person][spelling % len(POOL[person])]


@dataclass
class Job:
    """A job as sent: its id, arguments, and the commands it carries (a batch: one per entry)."""

    job_id: str
    function: str
    kwargs: dict[str, object]
    commands: list[Command]
    refused: bool  # the job's own as_of is outside the window: it fails with StampRefused
    near_edge: bool  # a command within a few seconds of the edge: a late re-run may be refused

    @property
    def batch(self) -> bool:
        return self.function == "provision_users"


@dataclass
class Timeline:
    """Turns drawn stamps into as_of values against the clock, and says which are refused."""

    t0: int
    now: int = 0
    history: list[int] = field(default_factory=list)
    adjusted: int = 0

    def resolve(self, draw: StampDraw) -> tuple[int, bool]:
        cutoff = self.now - RETENTION_US
        if draw.kind == "same" and self.history:
            as_of = self.history[draw.index % len(self.history)]
        elif draw.kind == "out":
            as_of = cutoff - OUT_US + draw.micro
        elif draw.kind == "edge":
            as_of = cutoff + EDGE_US + draw.micro
        elif draw.kind == "level":
            as_of = self.t0 - LEVELS_US + (draw.index % 8) * SECOND + draw.micro
        else:
            as_of = self.now - 400_000 + (draw.index % 4) * 100_000 + draw.micro
        if as_of < cutoff - MARGIN_OUT_US:
            refused = True
        elif as_of >= cutoff + MARGIN_IN_US:
            refused = False
        else:  # too close to the edge to say (a slow run, or an old edge stamp reused): a fresh one
            self.adjusted += 1
            as_of, refused = self.now - 400_000 + draw.micro, False
        self.history.append(as_of)
        return as_of, refused

    def near_edge(self, as_of: int) -> bool:
        return as_of < self.now - RETENTION_US + EDGE_US + SECOND


def _build(draw: JobDraw, job_id: str, timeline: Timeline, seal_key: str) -> Job:
    as_of, refused = timeline.resolve(draw.stamp)
    commands: list[Command] = []
    if draw.function == "provision_users":
        users: list[dict[str, object]] = []
        for entry in draw.entries:
            email = _spelled(entry.person, entry.spelling)
            user: dict[str, object] = {"email": email, "role": entry.role}
            password = None
            if entry.password is not None:
                password = Password(hash=HASHES[entry.password[1]])
                user["password_hash"] = password.hash
            if entry.external_id is not None:
                user["external_id"] = entry.external_id
            entry_as_of, entry_refused = as_of, refused
            if entry.stamp is not None:
                entry_as_of, entry_refused = timeline.resolve(entry.stamp)
                user["as_of"] = entry_as_of
            users.append(user)
            commands.append(
                Command(
                    draw.function,
                    email,
                    entry_as_of,
                    job_id,
                    entry.role,
                    password,
                    refused or entry_refused,
                    external_id=entry.external_id,
                )
            )
        kwargs: dict[str, object] = {"users": users, "as_of": as_of}
    else:
        (entry,) = draw.entries
        password = None
        if entry.password is not None:
            kind, which = entry.password
            password = Password(hash=HASHES[which]) if kind == "hash" else Password(sealed=PASSWORDS[which])
        command = Command(
            draw.function,
            _spelled(entry.person, entry.spelling),
            as_of,
            job_id,
            entry.role,
            password,
            refused,
            active=entry.active,
            external_id=entry.external_id,
        )
        commands.append(command)
        kwargs = command.arguments()
        if password is not None and password.sealed is not None:
            kwargs["password_sealed"] = seal_password(password.sealed, seal_key)
    near = any(timeline.near_edge(c.as_of) for c in commands if not c.refused)
    return Job(job_id, draw.function, kwargs, commands, refused, near)


# --- Running a phase.


async def _send(rig: Rig, jobs: list[Job]) -> dict[str, bytes]:
    """Queue the jobs in this order, some a few ms later than others; their raw jobs by id."""
    raw: dict[str, bytes] = {}
    rng = random.Random(len(jobs))
    async with rig.redis.pipeline(transaction=False) as pipe:
        for job in jobs:
            now_ms = int(time.time() * 1000)
            body = serialize_job(job.function, (), job.kwargs, None, now_ms, serializer=serialize)
            raw[job.job_id] = body
            pipe.set(f"arq:job:{job.job_id}", body, px=600_000)
            pipe.zadd(rig.settings.queue_name, {job.job_id: now_ms + rng.randrange(0, 25)})
        await pipe.execute()
    return raw


async def _redeliver(rig: Rig, job_id: str, body: bytes) -> None:
    """Queue a finished job again, exactly as it was: what a worker crash after the commit causes."""
    async with rig.redis.pipeline(transaction=True) as pipe:
        pipe.delete(f"arq:result:{job_id}")
        pipe.set(f"arq:job:{job_id}", body, px=600_000)
        pipe.zadd(rig.settings.queue_name, {job_id: int(time.time() * 1000)})
        await pipe.execute()


async def _cut(rig: Rig) -> None:
    """Cut every connection the workers have to PostgreSQL, and refuse new ones for a moment."""
    await asyncio.sleep(random.uniform(0, 0.02))
    await rig.proxy.stop()
    await asyncio.sleep(0.05)
    await rig.proxy.start()


async def _run_phase(
    rig: Rig, jobs: list[Job], phase: PhaseDraw
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Send the phase's jobs, cut the connections if drawn, re-deliver some; every job's result, and
    the first result of each re-delivered one."""
    raw = await _send(rig, [jobs[i] for i in phase.order])
    first: dict[str, dict[str, Any]] = {}
    if phase.cut:
        await _cut(rig)
    pending_redelivery = {jobs[i].job_id for i in phase.redelivered}
    deadline = time.monotonic() + 60
    while True:
        ids = list(raw)
        found = await rig.redis.mget([f"arq:result:{job_id}" for job_id in ids])
        results = {job_id: deserialize(r) for job_id, r in zip(ids, found, strict=True) if r is not None}
        for job_id in [j for j in pending_redelivery if j in results]:
            pending_redelivery.discard(job_id)
            await _redeliver(rig, job_id, raw[job_id])
            first[job_id] = results.pop(job_id)
        if len(results) == len(raw) and not pending_redelivery:
            return results, first
        assert time.monotonic() < deadline, f"jobs never finished: {sorted(set(raw) - set(results))}"
        await asyncio.sleep(0.01)


# --- The database as it is.


async def _truncate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE users, user_states, erased_stamps, user_changes RESTART IDENTITY"))


async def _users(engine: AsyncEngine) -> dict[str, UserRow]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT key, id, email, role, is_active, hashed_password, external_id FROM users")
        )
        return {
            row.key: UserRow(
                row.key, row.id, row.email, str(row.role), row.is_active, row.hashed_password, row.external_id
            )
            for row in rows
        }


async def _audit(engine: AsyncEngine) -> list[AuditRow]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT email_key, job_id, email, user_id, function, as_of, status, was_email, "
                "was_provisioned, provisioned, was_role, role, was_active, is_active, password_changed "
                "FROM user_changes"
            )
        )
        return [
            AuditRow(
                row.email_key,
                row.job_id,
                row.email,
                row.user_id,
                row.function,
                row.as_of,
                row.status,
                row.was_email,
                row.was_provisioned,
                row.provisioned,
                None if row.was_role is None else str(row.was_role),
                None if row.role is None else str(row.role),
                row.was_active,
                row.is_active,
                row.password_changed,
            )
            for row in rows
        ]


async def _states(engine: AsyncEngine) -> tuple[dict[str, Stamp], int]:
    """Each state row's newest stamp by key, and how many hold an intent not yet reported."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT key, provisioned_as_of, provisioned_job_id, role_as_of, role_job_id, "
                    "active_as_of, active_job_id, password_as_of, password_job_id, "
                    "external_id_as_of, external_id_job_id, "
                    "pending_since IS NOT NULL AND NOT intent_reported AS unreported FROM user_states"
                )
            )
        ).all()
    stamps = {row.key: max((row[i], row[i + 1]) for i in (1, 3, 5, 7, 9)) for row in rows}
    return stamps, sum(1 for row in rows if row.unreported)


async def _field_stamps(engine: AsyncEngine) -> dict[str, set[Stamp]]:
    """The stamps of each state row's fields, by key."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT key, provisioned_as_of, provisioned_job_id, role_as_of, role_job_id, active_as_of, "
                "active_job_id, password_as_of, password_job_id, external_id_as_of, external_id_job_id "
                "FROM user_states"
            )
        )
        return {row.key: {(row[i], row[i + 1]) for i in (1, 3, 5, 7, 9)} for row in rows}


async def _erased(engine: AsyncEngine) -> dict[bytes, Stamp]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT digest, as_of, job_id FROM erased_stamps"))
        return {bytes(row.digest): (row.as_of, row.job_id) for row in rows}


# --- Checks.


def _result_problems(
    jobs: list[Job], results: dict[str, dict[str, Any]], phase: PhaseDraw, audit: list[AuditRow]
) -> list[str]:
    """Each job's result against the model: refused or not, rejected entries, statuses as audited."""
    statuses = {(row.key, row.job_id): row.status for row in audit}
    problems = []
    for position, job in enumerate(jobs):
        result = results[job.job_id]
        again = position in phase.redelivered
        succeeded, value = result["s"], result["r"]
        refused = succeeded is False and isinstance(value, JobFailed) and value.error_type == "StampRefused"
        lenient = again and job.near_edge  # a late re-run of an edge stamp may be refused: it changes nothing
        whole_refused = job.refused or (not job.batch and job.commands[0].refused)
        label = f"job {job.job_id} {job.function}"
        if whole_refused:
            if not refused:
                problems.append(f"{label}: expected StampRefused, got {succeeded} {value!r}")
            continue
        if succeeded is not True:
            if not ((lenient and refused) or gave_up(job, result)):  # the model checks who gave up
                problems.append(f"{label}: failed: {value!r}")
            continue
        counted = not again and int(result["t"]) == 1  # its one run is what the audit recorded
        if job.batch:
            rejected = {int(r["index"]) for r in value["rejections"]}
            expected = {i for i, c in enumerate(job.commands) if c.refused}
            if rejected != expected and not (lenient and expected <= rejected):
                problems.append(f"{label}: rejected entries {sorted(rejected)}, expected {sorted(expected)}")
            if counted:
                audited = Counter(statuses.get((c.key, c.job_id)) for c in job.commands if not c.refused)
                reported = {s: int(value[s]) for s in ("created", "updated", "unchanged", "superseded")}
                if {s: n for s, n in reported.items() if n} != dict(audited):
                    problems.append(f"{label}: result counts {reported}, audit statuses {dict(audited)}")
        elif counted:
            status = statuses.get((job.commands[0].key, job.job_id))
            # an update_user that ended unchanged writes no audit row
            silent = job.function == "update_user" and value.get("status") == "unchanged"
            if (None if silent else value.get("status")) != status:
                problems.append(f"{label}: result status {value.get('status')}, audit status {status}")
    return problems


def gave_up(job: Job, result: dict[str, Any]) -> bool:
    """An update_user that ran out of tries waiting for its user (GaveUp): it changed nothing."""
    value = result["r"]
    return (
        job.function == "update_user"
        and result["s"] is False
        and isinstance(value, JobFailed)
        and value.error_type == "GaveUp"
    )


def _user_problems(people: People, actual: dict[str, UserRow]) -> list[str]:
    """The whole users table against the model's live users."""
    expected = people.users()
    problems = []
    for key in sorted(set(expected) | set(actual)):
        want, row = expected.get(key), actual.get(key)
        if want is None or row is None:
            problems.append(f"{key}: expected {want or 'no user'}, database has {row or 'no user'}")
        elif (row.email, row.role, row.is_active, row.external_id) != (
            want.email,
            want.role,
            want.is_active,
            want.external_id,
        ) or not password_matches(want.password, row.hashed_password):
            stored = "no password" if row.hashed_password is None else f"hash …{row.hashed_password[-6:]}"
            external = f" external id {row.external_id!r}" if row.external_id is not None else ""
            problems.append(
                f"{key}: expected {want}, database has {row.email} {row.role} {row.is_active} {stored}"
                f"{external}"
            )
    return problems


def _describe(sent: list[tuple[list[Job], PhaseDraw]], t0: int, outcomes: dict[str, str]) -> str:
    """Every phase's commands in the order they were queued (as_of relative to the example's start),
    with each job's outcome (its result's status or error, and its try)."""
    lines = [f"as_of relative to t0 ({t0} µs); RETENTION {RETENTION} s"]
    for number, (jobs, phase) in enumerate(sent):
        erase = ", ".join(_spelled(*e) for e in phase.erase)
        lines.append(
            f"phase {number}: cut={phase.cut} aged={phase.aged} redelivered={sorted(phase.redelivered)}"
            + (f" then erase {erase}" if erase else "")
        )
        for index in phase.order:
            for c in jobs[index].commands:
                role = f", {c.role}" if c.role else ""
                password = f", {c.password}" if c.password else ""
                active = f", active={c.active}" if c.active is not None else ""
                external = f", external_id={c.external_id!r}" if c.external_id is not None else ""
                refused = " REFUSED" if c.refused else ""
                outcome = f" → {outcomes[jobs[index].job_id]}" if jobs[index].job_id in outcomes else ""
                lines.append(
                    f"  [{index}] {c.function}({c.email!r}{role}{password}{active}{external}) "
                    f"as_of=t0{c.as_of - t0:+d}µs job …{c.job_id.rsplit('-', 1)[-1]}{refused}{outcome}"
                )
    return "\n".join(lines)


async def _maintain(rig: Rig, people: People, phase: PhaseDraw, sent_at: int) -> list[str]:
    """Intent expiry, erasures and the purge, in-process; what they did against the model."""
    problems = []
    if phase.aged:  # let the phase's edge stamps leave the window
        await asyncio.sleep(max(0.0, (sent_at + AGE_US - now_micros()) / SECOND))

    async def report(expired: list[ExpiredIntent]) -> None:
        return None

    uow = SqlAlchemyUnitOfWork(rig.sessions)
    expired = await maintenance.expire_intents(uow, report, window=0)
    intents = people.intents()
    for intent in expired:
        stamp = (intent.as_of, intent.job_id)
        if intents.get(intent.key) != (str(intent.role), stamp):
            problems.append(
                f"reported intent {intent}; the model's newest role intent: {intents.get(intent.key)}"
            )
        if (intent.key, stamp) in people.reported:
            problems.append(f"intent reported twice: {intent}")
        people.reported.add((intent.key, stamp))
    TALLY["intents expired"] += len(expired)

    for person, spelling in phase.erase:
        email = _spelled(person, spelling)
        expected = people.erase(person_key(email))
        uow = SqlAlchemyUnitOfWork(rig.sessions)
        erased = await maintenance.erase(uow, email, rig.erasure)
        if erased != expected:
            problems.append(
                f"erase {email!r}: removed (state rows, audit rows) {erased}, expected {expected}"
            )
        TALLY["erased"] += erased is not None

    cutoff = now_micros() - RETENTION_US
    loop = asyncio.get_running_loop()
    await maintenance.purge_tombstones(
        SqlAlchemyUnitOfWork(rig.sessions),
        retention=RETENTION,
        deadline=loop.time() + 30,
        clock=loop.time,
    )
    states, unreported = await _states(rig.engine)
    erased_rows = await _erased(rig.engine)
    if unreported:
        problems.append(f"{unreported} intents left unreported by an expiry with window 0")
    sure, maybe, erased_sure, erased_maybe = people.stale(cutoff, PURGE_MARGIN_US)
    if set(states) - set(people.state_stamps):
        problems.append(
            f"state rows of people the model has none for: {sorted(set(states) - set(people.state_stamps))}"
        )
    gone = set(people.state_stamps) - set(states)
    if not sure <= gone <= sure | maybe:
        problems.append(f"purged state rows {sorted(gone)}; must: {sorted(sure)}, may also: {sorted(maybe)}")
    by_digest = {rig.erasure.digests(key)[0]: key for key in people.erased}
    if set(erased_rows) - set(by_digest):
        problems.append(f"{len(set(erased_rows) - set(by_digest))} erased stamps the model has none for")
    erased_gone = set(people.erased) - {by_digest[d] for d in erased_rows if d in by_digest}
    if not erased_sure <= erased_gone <= erased_sure | erased_maybe:
        problems.append(f"purged erased stamps of {sorted(erased_gone)}; must: {sorted(erased_sure)}")
    people.purged(gone, erased_gone)
    TALLY["purged"] += len(gone) + len(erased_gone)
    for key, stamp in states.items():
        if key in people.state_stamps and stamp != people.state_stamps[key]:
            problems.append(f"{key}: state row's newest stamp {stamp}, expected {people.state_stamps[key]}")
    for digest, stamp in erased_rows.items():
        whose = by_digest.get(digest)
        if whose is not None and stamp != people.erased[whose]:
            problems.append(f"{whose}: erased stamp {stamp}, expected {people.erased[whose]}")
    return problems


def _gave_up_problems(people: People, jobs: list[Job], results: dict[str, dict[str, Any]]) -> list[str]:
    """An update_user may give up only for want of a user: none may be there once the phase settled,
    unless a command for its person finished only after the update's last try began (it ran out
    of tries first: tallied, a sign that the workers' MAX_TRIES is too small for the test)."""
    problems = []
    for job in jobs:
        result = results[job.job_id]
        if not gave_up(job, result):
            continue
        (command,) = job.commands
        if people.user(command.key) is None:
            continue
        later = [
            other.job_id
            for other in jobs
            if other is not job
            and command.key in {c.key for c in other.commands}
            and int(results[other.job_id]["ft"]) >= int(result["st"])
        ]
        if later:
            TALLY["updates that gave up before their user came"] += 1
        else:
            problems.append(f"job {job.job_id} update_user gave up, yet its user exists: {result['r']!r}")
    return problems


def _outcome(result: dict[str, Any]) -> str:
    value = result["r"]
    what = value.get("status", "counts") if result["s"] is True else getattr(value, "error_type", repr(value))
    return f"{what} (try {result['t']})"


async def _run_example(rig: Rig, phases: tuple[PhaseDraw, ...], number: int) -> None:
    await _truncate(rig.engine)  # the workers are idle: the previous example's jobs all finished
    people = People()
    timeline = Timeline(t0=now_micros())
    sent: list[tuple[list[Job], PhaseDraw]] = []
    outcomes: dict[str, str] = {}  # each job's result, for the description of a failing example
    ids: dict[str, int] = {}  # the user ids at the end of the previous phase
    for index, phase in enumerate(phases):
        timeline.now = now_micros()
        prefix = f"t{RUN_ID}-o{number:05d}-"
        jobs = [
            _build(draw, f"{prefix}{draw.token:04d}{index}{position:02d}", timeline, rig.seal_key)
            for position, draw in enumerate(phase.jobs)
        ]
        sent.append((jobs, phase))
        results, first = await _run_phase(rig, jobs, phase)
        outcomes.update((job_id, _outcome(result)) for job_id, result in results.items())
        outcomes.update((job_id, f"{_outcome(r)}, again → {outcomes[job_id]}") for job_id, r in first.items())
        users, audit = await _users(rig.engine), await _audit(rig.engine)
        audited = {(row.key, row.job_id) for row in audit}
        # An update that gave up changed nothing, unless an earlier run applied it: a re-delivered
        # one's first run, or a try whose commit went through while its connection was cut. Such a
        # run left its stamp on a field (or an audit row); one whose every field newer commands
        # hold since is moot.
        stamps = await _field_stamps(rig.engine)
        gave_up_jobs = [
            job
            for job in jobs
            if gave_up(job, results[job.job_id])
            and (job.job_id not in first or gave_up(job, first[job.job_id]))
            and (job.commands[0].key, job.job_id) not in audited
            and job.commands[0].stamp not in stamps.get(job.commands[0].key, set())
        ]
        gave_up_ids = {job.job_id for job in gave_up_jobs}
        for job in jobs:
            for command in job.commands:
                people.record(
                    command,
                    gave_up=job.job_id in gave_up_ids,
                    audited=command.function != "update_user" or (command.key, job.job_id) in audited,
                )

        problems = _result_problems(jobs, results, phase, audit)
        problems += _gave_up_problems(people, jobs, results)
        problems += _user_problems(people, users)
        problems += audit_problems(audit, people.audit_commands(), users)
        deleting = {
            c.key for job in jobs for c in job.commands if c.function == "delete_user" and not c.refused
        }
        for key, row in users.items():
            if key in ids and key not in deleting and ids[key] != row.id:
                problems.append(f"{key}: user id {ids[key]} became {row.id} with no delete in between")
        assert not problems, "\n".join([*problems, _describe(sent, timeline.t0, outcomes)])
        ids = {key: row.id for key, row in users.items()}

        problems = await _maintain(rig, people, phase, timeline.now)
        assert not problems, "\n".join([*problems, _describe(sent, timeline.t0, outcomes)])

        TALLY["phases"] += 1
        TALLY["aged phases"] += phase.aged
        TALLY["jobs"] += len(jobs) + len(phase.redelivered)
        TALLY["batches"] += sum(job.batch for job in jobs)
        TALLY["commands"] += sum(len(job.commands) for job in jobs)
        TALLY["refused"] += sum(c.refused for job in jobs for c in job.commands)
        TALLY["sealed"] += sum(1 for job in jobs if "password_sealed" in job.kwargs)
        TALLY["redelivered"] += len(phase.redelivered)
        TALLY["retried"] += sum(1 for r in results.values() if int(r["t"]) > 1)
        TALLY["cuts"] += phase.cut
        for job in jobs:
            if job.function == "update_user" and not job.refused:
                result = results[job.job_id]
                TALLY["updates"] += 1
                TALLY["updates gave up"] += gave_up(job, result)
                if result["s"] is True and int(result["t"]) > 1:
                    TALLY["updates applied after a retry"] += 1
                    TALLY["most tries an update applied on"] = max(
                        TALLY["most tries an update applied on"], int(result["t"])
                    )
                TALLY["updates unchanged"] += result["s"] is True and result["r"].get("status") == "unchanged"
        TALLY["phases where an update gave up"] += bool(gave_up_jobs)
    for events in people.events.values():
        as_ofs = Counter(e.as_of for e in events if isinstance(e, Command))
        TALLY["equal as_of"] += sum(n - 1 for n in as_ofs.values())
    TALLY["erasures as deletes"] += sum(
        isinstance(e, Erasure) for events in people.events.values() for e in events
    )
    TALLY["adjusted"] += timeline.adjusted
    TALLY["behind erasure"] += people.behind_erasure
    await _truncate(rig.engine)  # the jobs all finished: leave nothing to the other tests


@seed(SEED)
@hypothesis_settings(PROFILE)
@given(phases=examples())
def test_every_user_ends_as_the_newest_commands_say(phases: tuple[PhaseDraw, ...], rig: Rig) -> None:
    TALLY["examples"] += 1
    rig.loop.run(_run_example(rig, phases, TALLY["examples"]))


def _log_retries(path: Path) -> tuple[int, int, int]:
    """The workers' retry log lines: how many, how many were deadlocks, how many lack the field."""
    retries = deadlocks = unlabelled = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "retry":
            retries += 1
            deadlocks += event.get("deadlock") is True
            unlabelled += not isinstance(event.get("deadlock"), bool)
    return retries, deadlocks, unlabelled


def _metrics(port: int) -> dict[str, float]:
    """A worker's Prometheus samples (no labels kept: summed over them)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    samples: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            sample = name.split("{")[0] + ("{le=1}" if 'le="1.0"' in name else "")
            samples[sample] = samples.get(sample, 0.0) + float(value)
    return samples


def test_the_property_run_covered_every_case_without_a_deadlock() -> None:
    retries, deadlocks, unlabelled = (sum(counts) for counts in zip(*map(_log_retries, LOGS), strict=True))
    TALLY["logged retries"] += retries
    TALLY["deadlock retries"] += deadlocks
    for port in METRICS_PORTS:
        samples = _metrics(port)
        groups = samples.get("provisioning_group_size_count", 0)
        TALLY["groups of several jobs"] += int(
            groups - samples.get("provisioning_group_size_bucket{le=1}", 0)
        )
        TALLY["deadlock retries (metric)"] += int(samples.get("provisioning_deadlock_retries_total", 0))
        TALLY["workers with groups of several"] += groups > samples.get(
            "provisioning_group_size_bucket{le=1}", 0
        )
    print(f"\nTALLY ordering (seed {SEED}): {dict(sorted(TALLY.items()))}")
    assert TALLY["examples"] >= PROFILE.max_examples
    for case in (
        "redelivered",
        "cuts",
        "retried",
        "refused",
        "aged phases",
        "purged",
        "erased",
        "intents expired",
    ):
        assert TALLY[case] > 0, f"no example covered {case}"
    for case in (
        "equal as_of",
        "sealed",
        "batches",
        "erasures as deletes",
        "behind erasure",
        "updates",
        "updates applied after a retry",
        "updates gave up",
        "updates unchanged",
    ):
        assert TALLY[case] > 0, f"no example covered {case}"
    assert TALLY["workers with groups of several"] == 2, "a worker never wrote a group of several jobs"
    assert unlabelled == 0, "retry log lines without a boolean deadlock field"
    assert deadlocks == 0, f"{deadlocks} deadlock retries; see {LOGS}"
    assert TALLY["deadlock retries (metric)"] == 0


PATTERNS = {
    "provision, deactivate": ("provision_user", "deactivate_user"),
    "provision, deactivate, provision": ("provision_user", "deactivate_user", "provision_user"),
    "provision, set_user_role": ("provision_user", "set_user_role"),
    "provision, delete": ("provision_user", "delete_user"),
    "provision, delete, provision": ("provision_user", "delete_user", "provision_user"),
}


@pytest.mark.usefixtures("committing_sessions")
async def test_back_to_back_patterns_through_the_client_end_as_sent(
    settings: Settings, redis: ArqRedis, engine: AsyncEngine, tmp_path: Path
) -> None:
    """What an HR feed does: each person's commands sent back to back, one worker, default settings."""
    await _truncate(engine)  # a failed property example leaves its rows: fail here only on our own
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    sent: list[Command] = []
    jobs = []
    for name, functions in PATTERNS.items():
        for person in range(100):
            email = f"{name.replace(', ', '-')}-{person}@example.com"
            for step, function in enumerate(functions):
                role = ROLES[(person + step) % 3] if function in {"provision_user", "set_user_role"} else None
                if function == "set_user_role":
                    job = await client.set_user_role(email=email, role=role, job_id=new_id())  # type: ignore[arg-type]
                elif function == "provision_user":
                    job = await client.provision_user(email=email, role=role, job_id=new_id())  # type: ignore[arg-type]
                elif function == "deactivate_user":
                    job = await client.deactivate_user(email=email, job_id=new_id())
                else:
                    job = await client.delete_user(email=email, job_id=new_id())
                jobs.append(job)
                # The client's clock orders them as sent: the model only needs that order.
                sent.append(Command(function, email, len(sent), job.job_id, role))
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        results = [await job.result(timeout=120) for job in jobs]
    finally:
        stop(worker)

    expected = final_states(sent)
    actual = await _users(engine)
    keys = {c.key for c in sent}

    def looks(key: str) -> tuple[str, str, bool] | None:
        row = actual.get(key)
        return None if row is None else (row.email, row.role, row.is_active)

    def wanted(key: str) -> tuple[str, str, bool] | None:
        user = expected.get(key)
        return None if user is None else (user.email, user.role, user.is_active)

    mismatches = sorted(key for key in keys if looks(key) != wanted(key))
    print(f"\npatterns: {len(jobs)} jobs for {len(keys)} emails; {len(mismatches)} mismatches")
    assert len(results) == len(jobs) == 1200
    assert mismatches == []
    assert set(actual) <= keys
    assert _log_retries(log)[1] == 0
