"""This tier runs on PostgreSQL and Redis: the service fixtures come from `tests.support.services`."""

from tests.support.services import (
    _no_redis_keys_left_behind as _no_redis_keys_left_behind,
)
from tests.support.services import committing_sessions as committing_sessions
from tests.support.services import database_url as database_url
from tests.support.services import db_session as db_session
from tests.support.services import empty_database_url as empty_database_url
from tests.support.services import engine as engine
from tests.support.services import redis as redis
from tests.support.services import settings as settings
from tests.support.tracing import exported as exported
