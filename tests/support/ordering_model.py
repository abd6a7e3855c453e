"""The plain sequential model of the job contract: each person's commands applied one by one in stamp order.

The worker must end every person in the state this model computes, whatever order the commands
actually ran in. People are told apart by identity key (`worker.jobs.emails.email_key`),
never by spelling; a user's email is spelled as the newest provision applied sent it (as
`normalize_email` returns it). Stamps `(as_of, job id)` compare as Python tuples: job ids are
ASCII, so `str` order is the byte order (COLLATE "C") the merge breaks ties by.

Each field (role, active, password, external id) ends as the newest command naming it says, among
the commands newer than the person's last delete (or erasure); the person has a user while the
newest provision / delete / erasure is a provision, spelled as that provision sent it. For the
first four functions that is what applying them one by one does; `update_user` names only the
fields it carries, and one that finds no user in stamp order is held: its fields apply at the next
provision (as its job, retried until the provision lands, does). An update that gave up (no user
ever came while it tried) is a failed job: `People.record` leaves it out.

The model knows nothing of per-field stamps, tombstones or intents. It knows which commands the
window refused (they change nothing), and what `erase` does: a delete placed at the newest stamp
any of the person's accepted commands had so far, so that a later command older than (or equal
to) it changes nothing and a newer one meets a fresh person. `People` also predicts what the
housekeeping leaves behind (state rows, erased stamps, reportable intents), and `audit_problems`
checks the audit trail against the changes it records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from worker.jobs.emails import email_key, normalize_email
from worker.passwords.policy import verify_password

FUNCTIONS = (
    "provision_user",
    "set_user_role",
    "deactivate_user",
    "delete_user",
    "provision_users",
    "update_user",
)
PROVISIONS = frozenset({"provision_user", "provision_users"})
WITH_ROLE = frozenset({"provision_user", "provision_users", "set_user_role"})

Stamp = tuple[int, str]
"""(as_of µs, job id): where a command stands among a person's commands."""
ZERO: Stamp = (0, "")
"""The stamps of a state row no command wrote (an update_user that found no user creates one)."""

# What each function's audit rows may say (see the merge's CASE in worker/repositories/user.py).
STATUSES: dict[str, frozenset[str]] = {
    "provision_user": frozenset({"created", "updated", "unchanged", "superseded"}),
    "provision_users": frozenset({"created", "updated", "unchanged", "superseded"}),
    "set_user_role": frozenset({"updated", "unchanged", "superseded", "pending"}),
    "deactivate_user": frozenset({"updated", "unchanged", "superseded", "absent"}),
    "delete_user": frozenset({"deleted", "updated", "unchanged", "superseded", "absent"}),
    # an update_user that ends unchanged (or waiting, or gives up) writes no audit row
    "update_user": frozenset({"updated", "superseded"}),
}

_VERIFIED: dict[tuple[str, str], bool] = {}


def person_key(email: str) -> str:
    """The identity key the worker files `email` under."""
    return email_key(email)


@dataclass(frozen=True)
class Password:
    """What a provision asks the stored hash to be: this argon2id hash, or any hash of this password."""

    hash: str | None = None
    sealed: str | None = None

    def matches(self, stored: str | None) -> bool:
        """Whether `stored` is what this password asks for (a sealed one: a hash that verifies it)."""
        if self.hash is not None:
            return stored == self.hash
        if stored is None or self.sealed is None:
            return False
        if (stored, self.sealed) not in _VERIFIED:  # argon2id costs ~30 ms a check
            _VERIFIED[(stored, self.sealed)] = verify_password(stored, self.sealed).valid
        return _VERIFIED[(stored, self.sealed)]

    def __str__(self) -> str:
        if self.sealed is not None:
            return f"sealed({self.sealed!r})"
        return f"hash(…{(self.hash or '')[-6:]})"


def password_matches(expected: Password | None, stored: str | None) -> bool:
    """Whether the stored hash is the one the model expects (None: no hash stored)."""
    return stored is None if expected is None else expected.matches(stored)


@dataclass(frozen=True)
class Command:
    """One person's command: a single-user job, or a batch's entry (its own as_of, the batch's job id)."""

    function: str
    email: str  # as sent
    as_of: int
    job_id: str
    role: str | None = None
    password: Password | None = None
    refused: bool = False  # outside the window when it ran: it must change nothing
    active: bool | None = None  # update_user's `active`
    external_id: str | None = None

    @property
    def names_role(self) -> bool:
        """Whether the command sets (or, a delete, resets) the role."""
        return self.function != "deactivate_user" and (
            self.function != "update_user" or self.role is not None
        )

    @property
    def stamp(self) -> Stamp:
        """Where the command stands among the person's commands."""
        return self.as_of, self.job_id

    @cached_property
    def key(self) -> str:
        """The person the command is about."""
        return person_key(self.email)

    @cached_property
    def spelling(self) -> str:
        """The email as the worker stores it."""
        return normalize_email(self.email)

    def arguments(self) -> dict[str, object]:
        """A single-user job's keyword arguments, as an enqueuer sends them (no sealed password)."""
        arguments: dict[str, object] = {"email": self.email, "as_of": self.as_of}
        if self.role is not None:
            arguments["role"] = self.role
        if self.password is not None and self.password.hash is not None:
            arguments["password_hash"] = self.password.hash
        if self.active is not None:
            arguments["active"] = self.active
        if self.external_id is not None:
            arguments["external_id"] = self.external_id
        return arguments


@dataclass(frozen=True)
class Erasure:
    """`erase`: a delete at `stamp`, placed after every command with that very stamp."""

    stamp: Stamp


@dataclass(frozen=True)
class State:
    """A user as the database must hold it."""

    email: str
    role: str
    is_active: bool
    password: Password | None  # None: no hash stored
    external_id: str | None = None

    def __str__(self) -> str:
        active = "active" if self.is_active else "inactive"
        external = f" external id {self.external_id!r}" if self.external_id is not None else ""
        return f"{self.email} {self.role} {active} {self.password or 'no password'}{external}"


Event = Command | Erasure


def _order(event: Event) -> tuple[int, str, int]:
    return (*event.stamp, 1 if isinstance(event, Erasure) else 0)


def replay(events: Iterable[Event]) -> State | None:
    """One person's user (None: no user) after applying the accepted `events` in stamp order.

    Field by field: a delete (or erasure) resets every field, a provision names the user's
    existence, spelling, role and active (and its password and external id when it has them),
    set_user_role the role, deactivate_user active, update_user the fields it carries. A command
    that finds no user still sets the fields it names: a later provision overrides role and
    active anyway, and keeps the rest (what an update held until its provision ends as).
    """
    email: str | None = None  # the newest provision's spelling while the user exists
    role: str | None = None
    active = False
    password: Password | None = None
    external_id: str | None = None
    for event in sorted(events, key=_order):
        if isinstance(event, Erasure) or event.function == "delete_user":
            email, role, active, password, external_id = None, None, False, None, None
            continue
        if event.function in PROVISIONS:
            assert event.role is not None
            email, active = event.spelling, True
        elif event.function == "deactivate_user":
            active = False
        elif event.function == "update_user":
            if event.active is not None:
                active = event.active
        elif event.function != "set_user_role":
            raise AssertionError(f"unknown function {event.function}")
        if event.role is not None:
            role = event.role
        if event.password is not None:
            password = event.password
        if event.external_id is not None:
            external_id = event.external_id
    if email is None:
        return None
    assert role is not None
    return State(email, role, active, password, external_id)


def final_states(commands: Iterable[Command]) -> dict[str, State]:
    """Each person's user by identity key (absent ones left out) after the accepted `commands`."""
    by_key: dict[str, list[Event]] = defaultdict(list)
    for command in commands:
        if not command.refused:
            by_key[command.key].append(command)
    users = {key: replay(events) for key, events in by_key.items()}
    return {key: user for key, user in users.items() if user is not None}


@dataclass
class People:
    """Everyone an example sent commands for: what the database must hold for them, table by table."""

    events: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    # The newest stamp of each person's `user_states` row (present while the row is).
    state_stamps: dict[str, Stamp] = field(default_factory=dict)
    # What `erased_stamps` keeps, by identity key.
    erased: dict[str, Stamp] = field(default_factory=dict)
    # The audit rows since each person's last erasure: the accepted commands by job id.
    audit: dict[str, dict[str, Command]] = field(default_factory=lambda: defaultdict(dict))
    reported: set[tuple[str, Stamp]] = field(default_factory=set)
    # Accepted commands no newer than their person's last erasure (they must change nothing).
    behind_erasure: int = 0

    def record(self, command: Command, *, gave_up: bool = False, audited: bool = True) -> None:
        """A command ran: a refused one changes nothing (it never even locks its person).

        An update_user that `gave_up` changed nothing either, but it locked its person: a state row
        that was not there stays, with no stamp (or the erased one). `audited`: whether an
        update_user left an audit row (one that ended unchanged does not).
        """
        if command.refused:
            return
        key = command.key
        if gave_up:
            if key not in self.state_stamps:
                self.state_stamps[key] = self.erased.get(key, ZERO)
            return
        erasures = [e.stamp for e in self.events[key] if isinstance(e, Erasure)]
        if erasures and command.stamp <= max(erasures):
            self.behind_erasure += 1
        self.events[key].append(command)
        if audited:
            self.audit[key].setdefault(command.job_id, command)
        if key in self.state_stamps:
            self.state_stamps[key] = max(self.state_stamps[key], command.stamp)
        else:  # a new state row: a kept erased stamp stands in all its fields
            self.state_stamps[key] = max(command.stamp, self.erased.get(key, command.stamp))

    def user(self, key: str) -> State | None:
        """The person's user now (None: no user)."""
        return replay(self.events.get(key, ()))

    def users(self) -> dict[str, State]:
        """Every live user by identity key."""
        users = {key: self.user(key) for key in self.events}
        return {key: user for key, user in users.items() if user is not None}

    def newest(self, key: str) -> Stamp | None:
        """The newest stamp any of the person's accepted commands (or erasures) had."""
        return max((event.stamp for event in self.events.get(key, ())), default=None)

    def erase(self, key: str) -> tuple[int, int] | None:
        """`erase` of a person: (state rows, audit rows) it removes, or None while the user exists."""
        if self.user(key) is not None:
            return None
        stamped = self.state_stamps.get(key, ZERO) > ZERO  # a row no command stamped counts as none
        removed = (1 if stamped else 0, len(self.audit.pop(key, {})))
        kept = [
            s for s in (self.state_stamps.pop(key, None), self.erased.get(key)) if s is not None and s > ZERO
        ]
        if kept:
            self.erased[key] = max(kept)
        newest = self.newest(key)
        if newest is not None:
            self.events[key].append(Erasure(newest))
        return removed

    def intents(self) -> dict[str, tuple[str, Stamp]]:
        """People with no user whose role was last named by a set_user_role: (its role, its stamp).

        `expire_intents` may report only these (an intent that a provision claimed and a delete
        removed again is not stored as one, so not every one of them is reported).
        """
        intents: dict[str, tuple[str, Stamp]] = {}
        for key, events in self.events.items():
            if self.user(key) is not None:
                continue
            naming = [e for e in events if isinstance(e, Erasure) or e.names_role]
            if naming:
                last = max(naming, key=_order)
                if isinstance(last, Command) and last.function == "set_user_role":
                    assert last.role is not None
                    intents[key] = (last.role, last.stamp)
        return intents

    def stale(self, cutoff: int, margin: int) -> tuple[set[str], set[str], set[str], set[str]]:
        """What a purge at `cutoff` (µs) deletes: state rows surely and maybe, erased stamps surely and maybe.

        A state row goes when its person has no user and its newest stamp is older than the
        cutoff; one within `margin` of it may go or stay (the clocks differ by that much).
        """
        states_sure, states_maybe = set(), set()
        for key, (as_of, _) in self.state_stamps.items():
            if self.user(key) is None:
                if as_of < cutoff - margin:
                    states_sure.add(key)
                elif as_of < cutoff + margin:
                    states_maybe.add(key)
        erased_sure = {key for key, (as_of, _) in self.erased.items() if as_of < cutoff - margin}
        erased_maybe = {key for key, (as_of, _) in self.erased.items() if abs(as_of - cutoff) <= margin}
        return states_sure, states_maybe, erased_sure, erased_maybe - erased_sure

    def purged(self, states: Iterable[str], erased: Iterable[str]) -> None:
        """The purge deleted these state rows and erased stamps.

        A purged state row takes with it what it held for a person with no user (the values of an
        update newer than the last delete): every command accepted later is newer than all of its
        stamps and meets a fresh person, as after an erasure at its newest stamp (the audit trail
        stays).
        """
        for key in states:
            del self.state_stamps[key]
            newest = self.newest(key)
            if newest is not None:
                self.events[key].append(Erasure(newest))
        for key in erased:
            del self.erased[key]

    def audit_commands(self) -> dict[tuple[str, str], Command]:
        """The audit rows there must be, by (identity key, job id)."""
        return {(key, job_id): c for key, rows in self.audit.items() for job_id, c in rows.items()}


@dataclass(frozen=True)
class UserRow:
    """A `users` row."""

    key: str
    id: int
    email: str
    role: str
    is_active: bool
    hashed_password: str | None
    external_id: str | None = None


@dataclass(frozen=True)
class AuditRow:
    """A `user_changes` row."""

    key: str
    job_id: str
    email: str
    user_id: int | None
    function: str
    as_of: int
    status: str
    was_email: str | None
    was_provisioned: bool
    provisioned: bool
    was_role: str | None
    role: str | None
    was_active: bool | None
    is_active: bool | None
    password_changed: bool

    @property
    def before(self) -> tuple[object, ...]:
        """The person's users row before the change: ("absent",) or (id, email, role, active)."""
        if not self.was_provisioned:
            return ("absent",)
        return (self.user_id, self.was_email, self.was_role, self.was_active)

    @property
    def after(self) -> tuple[object, ...]:
        """The person's users row after the change."""
        if not self.provisioned:
            return ("absent",)
        return (self.user_id, self.email, self.role, self.is_active)


def user_node(row: UserRow | None) -> tuple[object, ...]:
    """A users row as `AuditRow.before`/`after` describe one."""
    return ("absent",) if row is None else (row.id, row.email, row.role, row.is_active)


def _row_problems(row: AuditRow, command: Command) -> list[str]:
    """What is wrong with one audit row, given the command it records."""
    problems = []
    if (row.function, row.as_of) != (command.function, command.as_of):
        problems.append(f"records {row.function} at {row.as_of}")
    if row.status not in STATUSES[command.function]:
        problems.append(f"status {row.status} is not one {command.function} can have")
    differs = (row.was_email, row.was_role, row.was_active) != (row.email, row.role, row.is_active)
    before_after = (row.was_provisioned, row.provisioned)
    wanted = {
        "created": [(False, True)],
        "deleted": [(True, False)],
        "updated": [(True, True)],
        "unchanged": [(True, True)],
        "superseded": [(True, True), (False, False)],
        "absent": [(False, False)],
        "pending": [(False, False)],
    }.get(row.status, [])
    if before_after not in wanted:
        problems.append(f"{row.status} from provisioned={row.was_provisioned} to {row.provisioned}")
    # the external id has no audit column: setting it (or a delete resetting it) shows as nothing differing
    names_external_id = command.external_id is not None or command.function == "delete_user"
    if row.status == "updated" and not (differs or row.password_changed or names_external_id):
        problems.append("updated, yet nothing differs and the password did not change")
    if row.status in {"unchanged", "superseded"} and row.provisioned and (differs or row.password_changed):
        problems.append(f"{row.status}, yet the user changed")
    if not row.was_provisioned and (row.was_email, row.was_role, row.was_active) != (None, None, None):
        problems.append("no user before, yet was_* are set")
    if not row.provisioned:
        if (row.role, row.is_active) != (None, None):
            problems.append("no user after, yet role/is_active are set")
        if row.email != command.spelling:
            problems.append(f"no user after, yet email {row.email!r} is not the command's")
    if not row.provisioned and not row.was_provisioned and (row.user_id is not None or row.password_changed):
        problems.append("no user before or after, yet a user id or a password change")
    if (row.provisioned or row.was_provisioned) and row.user_id is None:
        problems.append("a user before or after, yet no user id")
    return problems


def _trail_problem(rows: list[AuditRow], start: tuple[object, ...], end: tuple[object, ...]) -> str | None:
    """Unless the rows chain from `start` to `end`, each row's before being the previous row's after.

    The rows are the edges of a directed multigraph on users-row states; an order that chains
    them all is an Eulerian trail from `start` to `end`: it exists exactly when every state but
    those two has as many rows leaving as entering (`start` one more, `end` one fewer, unless
    they are one state) and every row is reachable from `start` ignoring direction.
    """
    if not rows:
        return None if start == end else f"no audit row, yet the user went from {start} to {end}"
    balance: Counter[tuple[object, ...]] = Counter()
    neighbours: dict[tuple[object, ...], set[tuple[object, ...]]] = defaultdict(set)
    for row in rows:
        balance[row.before] += 1
        balance[row.after] -= 1
        neighbours[row.before].add(row.after)
        neighbours[row.after].add(row.before)
    balance[start] -= 1
    balance[end] += 1
    unbalanced = {node: n for node, n in balance.items() if n}
    if unbalanced:
        return f"no order chains the rows from {start} to {end}: rows out minus in {unbalanced}"
    seen, todo = {start}, [start]
    while todo:
        for other in neighbours[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    if set(neighbours) - seen:
        return f"rows about states {sorted(map(str, set(neighbours) - seen))} do not connect to {start}"
    return None


def audit_problems(
    rows: Iterable[AuditRow], expected: Mapping[tuple[str, str], Command], users: Mapping[str, UserRow]
) -> list[str]:
    """Everything wrong with the audit trail, given the commands it must record and the users now.

    - one row per accepted command since its person's last erasure (key, job id), none for a
      refused one, none other;
    - each row records its command (function, as_of), with a status that function can have, and
      matches the change it states: created = no user → user; deleted = user → none; updated =
      user → user with email, role, is_active or the password changed; unchanged = user → user,
      nothing changed; superseded = nothing changed (a user before and after, or neither);
      absent / pending = no user before or after; without a user after, the row's email is the
      command's and role / is_active are empty; a user id whenever there is a user;
    - the rows of a person chain: in some order each row's was_* (and the user id) is the previous
      row's new values, from no user to the person's `users` row as it is now. That order is the
      order the merges ran in, which is neither stamp order (an older command that arrives last
      records the state the newer ones left) nor `recorded_at` order (the transaction's start,
      taken before it waited for the person's lock), so the check is that such an order exists.
    """
    rows = list(rows)
    problems = []
    by_key: dict[str, list[AuditRow]] = defaultdict(list)
    for row in rows:
        by_key[row.key].append(row)
        command = expected.get((row.key, row.job_id))
        if command is None:
            problems.append(f"audit row of no accepted command: {row}")
        else:
            problems += [
                f"{row.key} {row.function} {row.job_id}: {p} ({row})" for p in _row_problems(row, command)
            ]
    missing = set(expected) - {(row.key, row.job_id) for row in rows}
    problems += [f"no audit row for {expected[k].function} {k}" for k in sorted(missing)]
    for key in sorted(set(by_key) | set(users)):
        problem = _trail_problem(by_key.get(key, []), ("absent",), user_node(users.get(key)))
        if problem is not None:
            problems.append(f"{key}: {problem}")
    return problems
