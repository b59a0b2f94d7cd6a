"""The configuration through the real command: config.php table, precedence, bad values."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from shared.config import (
    Config,
    load_config,
    mask_url,
    parse_database_url,
    parse_invocation,
    parse_redis_url,
)
from shared.errors import ConfigError
from tests.shared.conftest import CONFIGS, run_cli

SECRETS = (
    "db-secret-1",
    "redis-secret-2",
    "sock-secret",
    "cluster-secret",
    "tls-secret",
    "aSecretThatMustNotLeak",
    "p@ss",
    "pgpw",
    "rpw",
    "secret",
)

# Environment some fixtures read through getenv().
FIXTURE_ENV = {
    "NC_DOMAIN": "nc.example.org",
    "POSTGRES_HOST": "pg",
    "POSTGRES_USER": "pgu",
    "POSTGRES_PASSWORD": "pgpw",
    "REDIS_HOST": "rh",
    "REDIS_HOST_PASSWORD": "rpw",
}

CERTS = str(CONFIGS / "certs")
# (fixture, expected keys of --dump-config)
GOOD_CONFIGS: list[tuple[str, dict[str, object]]] = [
    (
        "mysql_basic.php",
        {
            "database_url": "mysql://nextcloud:***@localhost:3306/nextcloud",
            "database_prefix": "oc_",
            "redis_urls": ["redis://127.0.0.1:6379/0"],
            "nextcloud_url": "https://cloud.example.com",
        },
    ),
    (
        "pgsql_ipv6_short_array.php",
        {
            "database_url": "postgres://oc_admin:***@[::1]:5433/nc_prod",
            "database_prefix": "nc_",
            "redis_urls": ["redis://push:***@10.1.2.3:6380/3"],
            "nextcloud_url": "https://[2001:db8::1]:8443/nextcloud",
        },
    ),
    (
        "pgsql_socket_folder.php",
        {
            "database_url": "postgres://www-data@/nextcloud?host=/var/run/postgresql",
            "redis_urls": ["redis+unix:///var/run/redis/redis-server.sock?db=0&pass=***"],
        },
    ),
    (
        "pgsql_socket_file.php",
        {"database_url": "postgres://nextcloud:***@/nextcloud?host=/run/postgresql&port=5433"},
    ),
    (
        "mysql_socket_and_port.php",
        {
            "database_url": "mysql://nc:***@localhost/nextcloud?socket=/run/mysqld/mysqld.sock",
            "redis_urls": ["redis://redis.internal:6390/0"],
        },
    ),
    (
        "mysql_host_port_dbport.php",
        {"database_url": "mysql://nc:***@db.example.com:3307/nextcloud"},
    ),
    (
        "sqlite_serverroot.php",
        {
            "database_url": f"sqlite://{CONFIGS.parent}/data/owncloud.db",
            "nextcloud_url": "http://localhost:8080",
        },
    ),
    ("sqlite_named.php", {"database_url": "sqlite:///srv/nc-data/cloud.db"}),
    (
        "getenv_expressions.php",
        {
            "database_url": "postgres://pgu:***@pg:5432/nextcloud",
            "redis_urls": ["redis://:***@rh:6379/0"],
            "nextcloud_url": "https://nc.example.org",
        },
    ),
    (
        "constants_and_cluster.php",
        {
            "database_url": "mysql://nextcloud:***@192.0.2.10:3306/nextcloud",
            "redis_urls": [
                "redis://cluster-user:***@node1.example.com:7000/0",
                "redis://cluster-user:***@node2.example.com:7001/0",
                "redis://cluster-user:***@[2001:db8::5]:7002/0",
            ],
        },
    ),
    (
        "redis_tls.php",
        {
            "redis_urls": ["rediss://:***@redis.example.com:6390/0"],
            "redis_tls_cert": f"{CERTS}/client.crt",
            "redis_tls_key": f"{CERTS}/client.key",
            "redis_tls_ca": f"{CERTS}/ca.crt",
            "redis_tls_dont_validate_hostname": True,
            "redis_tls_insecure": False,
        },
    ),
    ("notify_push_redis.php", {"redis_urls": ["redis://push-redis:6400/1"]}),
    (
        "assignments_and_if.php",
        {
            "database_url": "postgres://nextcloud:***@postgres:5432/nextcloud",
            "redis_urls": ["redis://:***@rh:6379/0"],
        },
    ),
    (
        "escapes.php",
        {
            "database_url": "mysql://nc%5Cadmin:***@db.example.com:3306/next%27cloud",
            "redis_urls": ["redis://redis:6379/0"],
        },
    ),
]

# (fixture, text the one stderr line must contain)
BAD_CONFIGS: list[tuple[str, str]] = [
    ("bad_syntax.php", "bad_syntax.php:5:3 (config.php): expected ')' but found a string"),
    ("bad_unterminated.php", "bad_unterminated.php:3:15 (config.php): unterminated string"),
    ("bad_no_config.php", "bad_no_config.php (config.php): does not set a $CONFIG array"),
    ("bad_dbtype.php", "dbtype (config.php): unsupported database type 'oci'"),
    ("bad_dbport.php", "dbhost (config.php): port 99999 is not in 1..65535"),
    ("bad_prefix.php", "dbtableprefix (config.php): 'oc_; DROP TABLE x' may contain only"),
    ("bad_no_redis.php", "--redis-url (default): no Redis configured"),
    ("bad_no_url.php", "--nextcloud-url (default): no Nextcloud URL configured"),
    ("bad_function.php", "bad_function.php:2:40 (config.php): unsupported function shell_exec()"),
]


@pytest.mark.parametrize(("fixture", "expected"), GOOD_CONFIGS, ids=[c[0] for c in GOOD_CONFIGS])
def test_config_php_dump(fixture: str, expected: dict[str, object]) -> None:
    result = run_cli("--dump-config", str(CONFIGS / fixture), env=FIXTURE_ENV)
    dumped = result.json()
    assert {key: dumped[key] for key in expected} == expected
    for secret in SECRETS:
        assert secret not in result.stdout


def test_glob_config_merges_in_nextclouds_order() -> None:
    main = str(CONFIGS / "glob" / "config" / "config.php")
    merged = run_cli("--dump-config", "--glob-config", main).json()
    # b.config.php comes after a.config.php and replaces the whole 'redis' entry;
    # s3.config.php sets no $CONFIG without its variable and is skipped.
    assert merged["redis_urls"] == ["redis://from-b:7002/0"]
    assert merged["database_url"] == "mysql://nc:***@db:3306/from_b"
    alone = run_cli("--dump-config", main).json()
    assert alone["redis_urls"] == ["redis://from-main:6379/0"]


@pytest.mark.parametrize(("fixture", "message"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_php(fixture: str, message: str) -> None:
    result = run_cli("--dump-config", str(CONFIGS / fixture))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("notify-push-gateway: ")
    assert message in lines[0]


BASE_ENV = {
    "DATABASE_URL": "postgres://nc:dbpw@db:5432/nextcloud",
    "REDIS_URL": "redis://:redispw@redis:6379/0",
    "NEXTCLOUD_URL": "https://cloud.example.com",
}


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"PORT": "abc"}, [], "PORT (environment): 'abc' is not an integer"),
        ({}, ["--port", "70000"], "--port (command line): 70000 is not in 1..65535"),
        ({"METRICS_PORT": "-1"}, [], "METRICS_PORT (environment): -1 is not in 1..65535"),
        ({"LOG": "verbose"}, [], "LOG (environment): unknown log level 'verbose'"),
        ({}, ["--log-level", "loud"], "--log-level (command line): unknown log level 'loud'"),
        ({"SOCKET_PERMISSIONS": "999"}, [], "SOCKET_PERMISSIONS (environment): '999' is not"),
        ({"DATABASE_URL": "oracle://x@y/z"}, [], "DATABASE_URL (environment): 'oracle://x@y/z'"),
        ({"DATABASE_URL": "postgres://u:pw@db:99999/x"}, [], "DATABASE_URL (environment)"),
        ({"DATABASE_URL": "mysql://u:pw@db:3306/"}, [], "no database name"),
        ({"DATABASE_URL": "postgres://u:pw@db/x?sslmode=bogus"}, [], "unknown sslmode 'bogus'"),
        ({"DATABASE_URL": "postgres://u:pw@db/x?port=abc"}, [], "port 'abc' is not a number"),
        ({"DATABASE_URL": "mysql://u:pw@db/x?socket=rel"}, [], "socket must be an absolute path"),
        ({"REDIS_URL": "http://redis"}, [], "REDIS_URL (environment): 'http://redis'"),
        ({}, ["--redis-url", "redis://r:port/0"], "--redis-url (command line)"),
        ({"REDIS_URL": "redis://r/x"}, [], "database index 'x' is not a number"),
        ({"REDIS_TLS_CERT": "/nonexistent/c.pem"}, [], "REDIS_TLS_CERT (environment): '/nonex"),
        ({}, ["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"], "--tls-cert"),
        ({"TLS_CERT": str(CONFIGS / "certs" / "ca.crt")}, [], "TLS needs both"),
        ({"BIND": "not-an-ip"}, [], "BIND (environment): 'not-an-ip' is not an IP address"),
        ({"NEXTCLOUD_URL": "cloud.example.com"}, [], "NEXTCLOUD_URL (environment)"),
        ({"DATABASE_PREFIX": "oc-"}, [], "DATABASE_PREFIX (environment): 'oc-' may contain"),
        ({"WORKERS": "0"}, [], "WORKERS (environment): 0 is not in 1..1024"),
        ({"DRAIN_TIME": "soon"}, [], "DRAIN_TIME (environment): 'soon' is not a number"),
        ({"AUTH_TIMEOUT": "0"}, [], "AUTH_TIMEOUT (environment): 0.0 is not more than 0 and at"),
        ({}, ["--auth-timeout", "3601"], "--auth-timeout (command line): 3601.0 is not more than"),
        ({}, ["--auth-timeout", "soon"], "--auth-timeout (command line): 'soon' is not a number"),
        ({"ALLOW_SELF_SIGNED": "maybe"}, [], "ALLOW_SELF_SIGNED (environment): 'maybe' is not"),
        ({"MAX_DEBOUNCE_TIME": "1.5"}, [], "MAX_DEBOUNCE_TIME (environment): '1.5' is not"),
        ({}, ["--no-such-option"], "arguments (command line): unrecognized arguments"),
        ({"DATABASE_URL": ""}, [], "--database-url (default): no database configured"),
        ({"NEXTCLOUD_URL": ""}, [], "--nextcloud-url (default): no Nextcloud URL"),
        ({"REDIS_URL": ""}, [], "--redis-url (default): no Redis configured"),
        ({}, ["/nonexistent/config.php"], "CONFIG_FILE (command line)"),
    ],
)
def test_bad_values_exit_2_with_one_line(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = run_cli("--dump-config", *args, env={**BASE_ENV, **env})
    assert result.returncode == 2, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    for secret in ("dbpw", "redispw"):
        assert secret not in result.stderr


def test_precedence_flag_over_env_over_file() -> None:
    config_php = str(CONFIGS / "mysql_basic.php")
    from_file = run_cli("--dump-config", config_php).json()
    assert from_file["nextcloud_url"] == "https://cloud.example.com"
    env = {"NEXTCLOUD_URL": "https://env.example.com", "PORT": "8001", "REDIS_URL": "redis://e/1"}
    from_env = run_cli("--dump-config", config_php, env=env).json()
    assert from_env["nextcloud_url"] == "https://env.example.com"
    assert from_env["port"] == 8001
    assert from_env["redis_urls"] == ["redis://e:6379/1"]
    assert from_env["database_url"] == from_file["database_url"]
    flags = ["--nextcloud-url", "https://flag.example.com", "-p", "8002"]
    flags += ["--redis-url", "redis://f1:7000", "--redis-url", "redis://f2:7001"]
    from_flags = run_cli("--dump-config", config_php, *flags, env=env).json()
    assert from_flags["nextcloud_url"] == "https://flag.example.com"
    assert from_flags["port"] == 8002
    assert from_flags["redis_urls"] == ["redis://f1:7000/0", "redis://f2:7001/0"]


def test_defaults_and_every_option_from_the_environment(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.touch()
    key.touch()
    defaults = run_cli("--dump-config", env=BASE_ENV).json()
    assert defaults["port"] == 7867
    assert defaults["bind"] in ("::", "0.0.0.0")
    assert defaults["socket_permissions"] == "0660"
    assert defaults["log_level"] == "warn"
    assert defaults["max_debounce_time"] == 15
    assert defaults["max_connection_time"] == 0
    assert defaults["metrics_port"] is None
    assert defaults["database_prefix"] == "oc_"
    assert defaults["auth_timeout"] == 15.0
    env = {
        **BASE_ENV,
        "BIND": "127.0.0.1",
        "SOCKET_PATH": "/run/push.sock",
        "SOCKET_PERMISSIONS": "0600",
        "METRICS_PORT": "9100",
        "METRICS_SOCKET_PATH": "/run/metrics.sock",
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        "ALLOW_SELF_SIGNED": "true",
        "USER_AGENT": "push/1",
        "LOG": "DEBUG",
        "NO_ANSI": "true",
        "MAX_DEBOUNCE_TIME": "5",
        "MAX_CONNECTION_TIME": "3600",
        "WORKERS": "3",
        "DRAIN_TIME": "0",
        "AUTH_TIMEOUT": "2.5",
        "DATABASE_PREFIX": "nc_",
    }
    dumped = run_cli("--dump-config", env=env).json()
    assert dumped["bind"] == "127.0.0.1"
    assert dumped["socket_path"] == "/run/push.sock"
    assert dumped["socket_permissions"] == "0600"
    assert dumped["metrics_port"] == 9100
    assert dumped["metrics_socket_path"] == "/run/metrics.sock"
    assert (dumped["tls_cert"], dumped["tls_key"]) == (str(cert), str(key))
    assert dumped["allow_self_signed"] is True
    assert dumped["user_agent"] == "push/1"
    assert dumped["log_level"] == "debug"
    assert dumped["no_ansi"] is True
    assert (dumped["max_debounce_time"], dumped["max_connection_time"]) == (5, 3600)
    assert (dumped["workers"], dumped["drain_time"]) == (3, 0.0)
    assert dumped["auth_timeout"] == 2.5
    assert dumped["database_prefix"] == "nc_"
    assert "dbpw" not in str(dumped) and "redispw" not in str(dumped)


def test_dump_has_every_option_once() -> None:
    keys = set(run_cli("--dump-config", env=BASE_ENV).json())
    assert keys == {
        "database_url", "database_prefix", "redis_urls", "redis_tls_cert", "redis_tls_key",
        "redis_tls_ca", "redis_tls_dont_validate_hostname", "redis_tls_insecure", "redis_key_prefix",
        "nextcloud_url", "bind", "port", "socket_path", "socket_permissions", "metrics_port",
        "metrics_socket_path", "tls_cert", "tls_key", "allow_self_signed", "user_agent",
        "log_level", "no_ansi", "workers", "max_debounce_time", "max_connection_time",
        "debounce_disable", "drain_time", "auth_timeout", "config_file",
    }  # fmt: skip


def test_version_needs_no_configuration() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert "compatible with notify_push 1.4.0" in result.stdout
    assert result.stdout.startswith("notify-push-gateway ")


def test_parse_invocation_in_process() -> None:
    version = parse_invocation(["--version"], {})
    assert (version.config, version.show_version) == (None, True)
    run = parse_invocation(["--dump-config"], BASE_ENV)
    assert run.dump_config and run.config is not None
    assert run.config.database is not None
    assert run.config.database.url == "postgres://nc:dbpw@db:5432/nextcloud"
    with pytest.raises(ConfigError) as caught:
        load_config([], {**BASE_ENV, "PORT": "x"})
    assert (caught.value.option, caught.value.source) == ("PORT", "environment")


def test_config_is_picklable() -> None:
    config = load_config(["--workers", "2"], BASE_ENV)
    assert pickle.loads(pickle.dumps(config)) == config
    assert isinstance(config, Config)


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("postgresql://u:p@db/x", "postgres://u:p@db:5432/x"),
        (
            "postgres://u:p%40w@/x?host=/run/postgresql",
            "postgres://u:p%40w@/x?host=/run/postgresql",
        ),
        ("mariadb://u:p@db:3307/x", "mysql://u:p@db:3307/x"),
        (
            "mysql://u:p@localhost/x?socket=/run/m.sock",
            "mysql://u:p@localhost/x?socket=/run/m.sock",
        ),
        ("sqlite:///var/data/nc.db", "sqlite:///var/data/nc.db"),
        ("postgres://u@[::1]:5433/x?sslmode=require", "postgres://u@[::1]:5433/x?sslmode=require"),
    ],
)
def test_database_url_forms(url: str, normalized: str) -> None:
    assert parse_database_url(url).url == normalized


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("redis://redis", "redis://redis:6379/0"),
        ("redis://:pw@redis:6380/2", "redis://:pw@redis:6380/2"),
        ("redis://user:p%2Fw@[::1]/1", "redis://user:p%2Fw@[::1]:6379/1"),
        ("rediss://h:6390", "rediss://h:6390/0"),
        ("redis+unix:///run/r.sock?db=3&pass=pw", "redis+unix:///run/r.sock?db=3&pass=pw"),
        ("unix:///run/r.sock", "redis+unix:///run/r.sock?db=0"),
        ("redis+unix://u:pw@/run/r.sock", "redis+unix:///run/r.sock?db=0&user=u&pass=pw"),
    ],
)
def test_redis_url_forms(url: str, normalized: str) -> None:
    assert parse_redis_url(url).url == normalized


def test_mask_url_hides_every_password() -> None:
    assert mask_url("redis+unix:///r.sock?db=0&pass=pw") == "redis+unix:///r.sock?db=0&pass=***"
    assert mask_url("postgres://u:pw@h:5432/x") == "postgres://u:***@h:5432/x"
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("sqlite:///a/b.db") == "sqlite:///a/b.db"


def test_redis_key_prefix_default_and_its_rules() -> None:
    assert (
        run_cli("--dump-config", env=BASE_ENV).json()["redis_key_prefix"] == "notify_push_gateway:"
    )
    env = {**BASE_ENV, "REDIS_KEY_PREFIX": "push-a:"}
    assert run_cli("--dump-config", env=env).json()["redis_key_prefix"] == "push-a:"
    for bad in ("has{tag}", "with space", "x" * 65):
        result = run_cli("--dump-config", env={**BASE_ENV, "REDIS_KEY_PREFIX": bad})
        assert result.returncode == 2 and "REDIS_KEY_PREFIX" in result.stderr, bad
