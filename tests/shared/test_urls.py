"""The one URL grammar: parse and ``url`` are inverses, and no shown form has a password."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import (
    Config,
    DatabaseTarget,
    RedisTarget,
    load_config,
    mask_url,
    parse_database_url,
    parse_redis_url,
)
from shared.config.urls import database_target
from shared.errors import ConfigError

# Every form DESIGN.md documents, written as the targets write them back.
DATABASE_FORMS = [
    "postgres://user:pass@db.example.com:5433/nextcloud",
    "postgres://user:pass@/nextcloud?host=/run/postgresql",
    "postgres://user:pass@/nextcloud?host=/run/postgresql&port=5433",
    "postgres://user@[::1]:5432/nc?sslmode=require&application_name=push",
    "mysql://user:pass@db:3306/nextcloud",
    "mysql://user:pass@localhost/nextcloud?socket=/run/mysqld/mysqld.sock",
    "sqlite:///var/www/nextcloud/data/owncloud.db",
]
REDIS_FORMS = [
    "redis://redis:6379/0",
    "redis://user:pass@redis:6380/2",
    "rediss://:pass@redis.example.com:6390/0",
    "redis://[2001:db8::5]:7002/0",
    "redis+unix:///run/redis/redis.sock?db=3",
    "redis+unix:///run/redis/redis.sock?db=1&user=push&pass=pw",
]


@pytest.mark.parametrize("url", DATABASE_FORMS)
def test_database_forms_round_trip(url: str) -> None:
    target = parse_database_url(url)
    assert target.url == url
    assert parse_database_url(target.url) == target


@pytest.mark.parametrize("url", REDIS_FORMS)
def test_redis_forms_round_trip(url: str) -> None:
    target = parse_redis_url(url)
    assert target.url == url
    assert parse_redis_url(target.url) == target


def test_targets_hold_what_the_drivers_need() -> None:
    socket = parse_database_url("postgres://nc@/nextcloud?host=/run/postgresql&port=5433")
    assert (socket.socket, socket.host, socket.port) == ("/run/postgresql", None, 5433)
    mysql = parse_database_url("mysql://nc:pw@db:3307/nc?socket=/run/m.sock")
    # The socket file is the whole address: host and port are the defaults.
    assert (mysql.socket, mysql.host, mysql.port) == ("/run/m.sock", "localhost", 3306)
    unix = parse_redis_url("redis+unix://u:pw@/run/r.sock?db=2")
    assert (unix.unix_socket_path, unix.db, unix.username, unix.password) == (
        "/run/r.sock",
        2,
        "u",
        "pw",
    )
    assert parse_redis_url("rediss://h").tls


@pytest.mark.parametrize(
    "make",
    [
        lambda: DatabaseTarget("postgres", "x", "db", 0),
        lambda: DatabaseTarget("postgres", "x", "db", 5432, sslmode="bogus"),
        lambda: DatabaseTarget("mysql", "", "db", 3306),
        lambda: DatabaseTarget("mysql", "x", None, 3306),
        lambda: DatabaseTarget("sqlite", "relative.db"),
        lambda: RedisTarget(None, None, "relative.sock"),
        lambda: RedisTarget("h", 70000),
        lambda: RedisTarget("h", 6379, db=-1),
    ],
)
def test_targets_refuse_what_no_url_could_mean(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


# -- properties over the whole grammar --------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
)
NAME = TEXT.filter(lambda t: "/" not in t)
SEGMENT = NAME.filter(lambda t: t not in (".", ".."))
ABSOLUTE = st.lists(SEGMENT, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
HOST = st.sampled_from(["db", "10.0.0.1", "::1", "db.example.com", "2001:db8::5"])
PORT = st.integers(1, 65535)
OPTIONAL = st.none() | TEXT


@st.composite
def database_targets(draw: st.DrawFn) -> DatabaseTarget:
    dialect = draw(st.sampled_from(["postgres", "mysql", "sqlite"]))
    known = {"postgres": ("host", "port", "sslmode"), "mysql": ("socket",), "sqlite": ()}[dialect]
    key = TEXT.filter(lambda k: k not in known)
    params = tuple(draw(st.lists(st.tuples(key, st.text(max_size=8)), max_size=2)))
    if dialect == "sqlite":
        return database_target("sqlite", draw(ABSOLUTE), params=params)
    return database_target(
        dialect,
        draw(NAME if dialect == "mysql" else NAME | st.just("")),
        host=draw(HOST),
        port=draw(PORT),
        user=draw(OPTIONAL),
        password=draw(OPTIONAL),
        socket=draw(st.none() | ABSOLUTE),
        sslmode=draw(st.none() | st.sampled_from(["disable", "require", "verify-full"]))
        if dialect == "postgres"
        else None,
        params=params,
    )


@st.composite
def redis_targets(draw: st.DrawFn) -> RedisTarget:
    user, password, db = draw(OPTIONAL), draw(OPTIONAL), draw(st.integers(0, 10**6))
    if draw(st.booleans()):
        return RedisTarget(None, None, draw(ABSOLUTE), db, user, password)
    return RedisTarget(draw(HOST), draw(PORT), None, db, user, password, draw(st.booleans()))


@given(database_targets())
def test_every_database_target_round_trips(target: DatabaseTarget) -> None:
    assert parse_database_url(target.url) == target
    assert parse_database_url(target.masked).password in (None, "***")


@given(redis_targets())
def test_every_redis_target_round_trips(target: RedisTarget) -> None:
    assert parse_redis_url(target.url) == target


# A password that occurs nowhere else in a URL, with the characters that need
# percent-encoding; "§" marks both ends so a leak of any part of it shows.
PASSWORDS = st.text(alphabet="/?@:#%&=+ aZ9!*'~é", max_size=16).map(lambda t: f"§{t}§")


def _forms(password: str) -> tuple[list[str], list[str]]:
    """(database URLs, Redis URLs) with ``password`` percent-encoded in every form."""
    pw = quote(password, safe="")
    databases = [
        f"postgres://nc:{pw}@db:5433/nextcloud",
        f"postgres://nc:{pw}@/nextcloud?host=/run/postgresql",
        f"mysql://nc:{pw}@db:3306/nextcloud",
        f"mysql://nc:{pw}@localhost/nextcloud?socket=/run/mysqld/mysqld.sock",
        f"postgres://nc@db/nextcloud?password={pw}",
    ]
    redis = [
        f"redis://:{pw}@redis:6379/0",
        f"rediss://push:{pw}@redis:6390/1",
        f"redis+unix:///run/redis.sock?db=2&user=push&pass={pw}",
    ]
    return databases, redis


def _assert_hidden(password: str, *shown: str) -> None:
    for text in shown:
        for form in (password, quote(password, safe=""), quote_plus(password, safe="/")):
            assert form not in text, text


ENV = {"NEXTCLOUD_URL": "https://cloud.example.com"}


@given(PASSWORDS)
def test_no_shown_form_has_the_password(password: str) -> None:
    databases, redis = _forms(password)
    for url in databases:
        database = parse_database_url(url)
        if "password=" not in url:
            assert database.password == password
        assert parse_database_url(database.url) == database
        _assert_hidden(password, repr(database), str(database), database.masked, mask_url(url))
    for url in redis:
        target = parse_redis_url(url)
        assert target.password == password
        assert parse_redis_url(target.url) == target
        shown = (repr(target), str(target), target.masked, target.describe(), mask_url(url))
        _assert_hidden(password, *shown)
    config = load_config(["--database-url", databases[0], "--redis-url", redis[2]], ENV)
    _assert_hidden(password, repr(config), str(config), json.dumps(config.dump()))
    direct = Config(
        nextcloud_url=f"https://admin:{quote(password, safe='')}@cloud.example.com",
        redis=tuple(parse_redis_url(url) for url in redis),
        database=parse_database_url(databases[1]),
    )
    _assert_hidden(password, repr(direct), json.dumps(direct.dump()))


@given(PASSWORDS)
def test_no_config_error_has_the_password(password: str) -> None:
    pw = quote(password, safe="")
    bad = [
        (["--database-url", f"postgres://nc:{pw}@db:99999/x"], "--redis-url", "redis://r"),
        (["--database-url", f"postgres://nc:{pw}@db/x?sslmode=bogus"], "--redis-url", "redis://r"),
        (["--database-url", f"oracle://nc:{pw}@db/x"], "--redis-url", "redis://r"),
        (["--database-url", "sqlite:///x.db"], "--redis-url", f"redis://:{pw}@r/x"),
        (["--database-url", "sqlite:///x.db"], "--redis-url", f"ftp://u:{pw}@r"),
    ]
    for args, flag, redis in bad:
        with pytest.raises(ConfigError) as caught:
            load_config([*args, flag, redis], ENV)
        _assert_hidden(password, str(caught.value), repr(caught.value), caught.value.message)
