"""Redis clients built from the configuration, against real redis-server processes."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from shared.config import load_config, parse_redis_url
from shared.redis_connection import RedisTls, redis_from_config
from tests.shared.conftest import (
    REDIS_CLI,
    REDIS_SERVER,
    RedisServer,
    run_cli,
    wait_for_ping,
)
from tests.support.devstack import free_port
from tests.support.processes import timeout

BASE_ENV = {
    "DATABASE_URL": "sqlite:///tmp/nc.db",
    "NEXTCLOUD_URL": "https://cloud.example.com",
}


async def publish_and_receive(
    subscriber_url: str, publisher_url: str, env: dict[str, str]
) -> bytes:
    """Subscribe through one client, publish through another, return the message body."""
    config = load_config([], {**BASE_ENV, **env, "REDIS_URL": subscriber_url})
    subscriber = redis_from_config(config, config.redis[0])
    publisher = redis_from_config(config, parse_redis_url(publisher_url))
    try:
        async with subscriber.pubsub() as pubsub:
            await pubsub.subscribe("notify_file")
            deadline = time.monotonic() + timeout(10)
            while time.monotonic() < deadline:
                await publisher.publish("notify_file", b'{"storage":1,"path":"x"}')
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is not None:
                    data = message["data"]
                    assert isinstance(data, bytes)
                    return data
            raise AssertionError("no message before the deadline")
    finally:
        await subscriber.aclose()
        await publisher.aclose()


@pytest.mark.integration
def test_unix_socket_with_password(redis_server: RedisServer) -> None:
    url = f"redis+unix://{redis_server.socket_path}?db=0&pass={quote(redis_server.password)}"
    body = asyncio.run(publish_and_receive(url, url, {}))
    assert body == b'{"storage":1,"path":"x"}'
    # The same URL through the command line never shows the password.
    dumped = run_cli("--dump-config", env={**BASE_ENV, "REDIS_URL": url})
    assert redis_server.password not in dumped.stdout
    assert dumped.json()["redis_urls"] == [f"redis+unix://{redis_server.socket_path}?db=0&pass=***"]


@pytest.mark.integration
def test_wrong_password_is_refused(redis_server: RedisServer) -> None:
    url = f"redis+unix://{redis_server.socket_path}?db=0&pass=wrong"
    config = load_config([], {**BASE_ENV, "REDIS_URL": url})

    async def ping() -> None:
        client = redis_from_config(config, config.redis[0])
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(Exception, match=r"(?i)password|auth"):
        asyncio.run(ping())


def free_cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free and valid too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    pytest.skip("no free port pair for a cluster node")


def start_redis(folder: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [REDIS_SERVER, "--save", "", "--appendonly", "no", "--dir", folder, *extra],
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture
def tcp_redis_with_acl_user() -> Iterator[int]:
    """redis-server on a free TCP port with an ACL user ``push`` (password ``pushpw``)."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="npg-redis-") as folder:
        port = free_port()
        process = start_redis(
            folder,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--user", "default", "off"),
            *("--user", "push", "on", ">pushpw", "~*", "&*", "+@all"),
        )
        try:
            args = ["-p", str(port), "--user", "push", "--pass", "pushpw", "--no-auth-warning"]
            wait_for_ping(args, process, time.monotonic() + timeout(10))
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.integration
def test_tcp_acl_user_and_db_index(tcp_redis_with_acl_user: int) -> None:
    port = tcp_redis_with_acl_user
    url = f"redis://push:pushpw@127.0.0.1:{port}/5"
    config = load_config([], {**BASE_ENV, "REDIS_URL": url})

    async def check() -> int:
        client = redis_from_config(config, config.redis[0])
        try:
            await client.set("k", "v")
            info = await client.client_info()
            return int(info["db"])
        finally:
            await client.aclose()

    assert asyncio.run(check()) == 5
    assert asyncio.run(publish_and_receive(url, url, {})) == b'{"storage":1,"path":"x"}'


@pytest.fixture
def redis_cluster() -> Iterator[list[int]]:
    """Three cluster-enabled masters, or a skip when no cluster forms within 10 s."""
    if not os.path.exists(REDIS_SERVER) or not os.path.exists(REDIS_CLI):
        pytest.skip("redis-server or redis-cli is not installed")
    deadline = time.monotonic() + timeout(10)
    with tempfile.TemporaryDirectory(prefix="npg-cluster-") as folder:
        ports = [free_cluster_port() for _ in range(3)]
        processes = []
        try:
            for port in ports:
                node = os.path.join(folder, str(port))
                os.mkdir(node)
                processes.append(
                    start_redis(
                        node,
                        *("--port", str(port), "--bind", "127.0.0.1"),
                        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    )
                )
            for port, process in zip(ports, processes, strict=True):
                wait_for_ping(["-p", str(port)], process, deadline)
            create = subprocess.run(
                [
                    *(REDIS_CLI, "--cluster", "create"),
                    *(f"127.0.0.1:{p}" for p in ports),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
            if create.returncode != 0:
                pytest.skip(f"no local Redis cluster: {create.stdout[-200:]}")
            yield ports
        except subprocess.TimeoutExpired:
            pytest.skip("no local Redis cluster within 10 s")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=10)


@pytest.mark.integration
def test_cluster_publish_reaches_a_subscriber_on_another_node(redis_cluster: list[int]) -> None:
    first, second, _third = redis_cluster
    flags = [arg for port in redis_cluster for arg in ("--redis-url", f"redis://127.0.0.1:{port}")]
    config = load_config(flags, BASE_ENV)
    assert len(config.redis) == 3
    # Subscribed through the first node, published on the second: the cluster
    # bus carries PUBLISH to every node, which is why one subscription is enough.
    body = asyncio.run(
        publish_and_receive(config.redis[0].url, f"redis://127.0.0.1:{second}/0", {})
    )
    assert body == b'{"storage":1,"path":"x"}'
    assert first != second


def test_cluster_settings_from_config_php_are_one_url_per_seed() -> None:
    from tests.shared.conftest import CONFIGS

    config = load_config([str(CONFIGS / "constants_and_cluster.php")], {})
    targets = config.redis
    assert [(t.host, t.port) for t in targets] == [
        ("node1.example.com", 7000),
        ("node2.example.com", 7001),
        ("2001:db8::5", 7002),
    ]
    assert {(t.username, t.password, t.db, t.tls) for t in targets} == {
        ("cluster-user", "cluster-secret", 0, False)
    }


def test_client_settings_for_tls_and_timeouts(tmp_path: os.PathLike[str]) -> None:
    ca = os.path.join(tmp_path, "ca.pem")
    open(ca, "w").close()
    env = {
        **BASE_ENV,
        "REDIS_URL": "rediss://u:pw@redis.example.com:6390/2",
        "REDIS_TLS_CA": ca,
        "REDIS_TLS_DONT_VALIDATE_HOSTNAME": "1",
    }
    config = load_config([], env)
    client = redis_from_config(config, config.redis[0])
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.example.com", 6390, 2)
    assert (kwargs["username"], kwargs["password"]) == ("u", "pw")
    assert kwargs["ssl_ca_certs"] == ca
    assert kwargs["ssl_check_hostname"] is False
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert kwargs["socket_timeout"] is None
    assert kwargs["socket_connect_timeout"] == 5.0
    insecure = load_config([], {**env, "REDIS_TLS_INSECURE": "1"})
    kwargs = redis_from_config(insecure, insecure.redis[0]).connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_NONE
    assert kwargs["ssl_check_hostname"] is False


def test_one_tls_policy_for_both_clients(tmp_path: os.PathLike[str]) -> None:
    ca = os.path.join(tmp_path, "ca.pem")
    open(ca, "w").close()
    env = {**BASE_ENV, "REDIS_URL": "rediss://redis.example.com", "REDIS_TLS_CA": ca}
    strict = RedisTls.from_config(load_config([], env))
    assert (strict.cafile, strict.check_hostname, strict.verify_peer) == (ca, True, True)
    context = RedisTls().context()  # the system's CAs: an empty CA file cannot be loaded
    assert (context.check_hostname, context.verify_mode) == (True, ssl.CERT_REQUIRED)
    unchecked = RedisTls.from_config(
        load_config([], {**env, "REDIS_TLS_DONT_VALIDATE_HOSTNAME": "1"})
    )
    assert (unchecked.check_hostname, unchecked.verify_peer) == (False, True)
    # Insecure means no checks at all, so the hostname check goes too.
    insecure = RedisTls.from_config(load_config([], {**env, "REDIS_TLS_INSECURE": "1"}))
    assert (insecure.check_hostname, insecure.verify_peer) == (False, False)
    context = RedisTls(check_hostname=False, verify_peer=False).context()
    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_NONE)


def test_describe_never_shows_the_password() -> None:
    def describe(url: str) -> str:
        return parse_redis_url(url).describe()

    assert describe("redis://u:topsecret@h:1/2") == "redis h:1 db 2 as u with password"
    assert describe("redis+unix:///r.sock?db=1&pass=topsecret") == (
        "unix:/r.sock db 1 with password"
    )
    assert describe("rediss://[::1]:6390") == "rediss [::1]:6390 db 0"
    with pytest.raises(ValueError) as invalid:
        parse_redis_url("ftp://x:topsecret@h")
    assert "topsecret" not in str(invalid.value)
