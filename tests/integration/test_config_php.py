"""The gateway started the way admins start notify_push: with Nextcloud's config.php."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import USERS
from tests.support.client import Client
from tests.support.processes import Gateway, RedisServer, Stub, free_port

pytestmark = pytest.mark.integration

CONFIG_PHP = """<?php
$CONFIG = array (
  'htaccess.RewriteBase' => '/',
  'memcache.local' => '\\\\OC\\\\Memcache\\\\APCu',
  'memcache.distributed' => '\\\\OC\\\\Memcache\\\\Redis',
  'memcache.locking' => '\\\\OC\\\\Memcache\\\\Redis',
  'redis' => [
    'host' => '127.0.0.1',
    'port' => {redis_port},
    'timeout' => 0.0,
    'dbindex' => 0,
  ],
  'apps_paths' => array (
    0 => array ('path' => OC::$SERVERROOT . '/apps', 'url' => '/apps', 'writable' => false),
    1 => array ('path' => OC::$SERVERROOT . '/custom_apps', 'url' => '/custom_apps', 'writable' => true),
  ),
  'instanceid' => 'oc8c0fd71e03',
  'passwordsalt' => 'Wv6RxC2bC4A0zN5x/salt',
  'secret' => 'kq2E8cmG4JtOp4vW5S6nb/secret',
  'trusted_domains' => array (0 => 'cloud.example.com'),
  'datadirectory' => '{datadir}',
  'dbtype' => 'sqlite3',
  'dbname' => 'nextcloud',
  'dbtableprefix' => 'oc_',
  'version' => '30.0.2.2',
  'overwrite.cli.url' => '{nextcloud_url}',
  'installed' => true,
  'maintenance' => false,
  'loglevel' => 2,
  'memories.exiftool' => '/var/www/html/custom_apps/memories/bin-ext/exiftool-amd64-glibc',
  'filelocking.ttl' => 60 * 60, // one hour
  # a hash comment
  /* and a block comment */
);
"""


def test_gateway_serves_from_config_php(
    tmp_path: Path, redis_server: RedisServer, stub: Stub, database: Path,
    publisher: redis.Redis, clients: contextlib.ExitStack,
) -> None:  # fmt: skip
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    config_php = config_dir / "config.php"
    config_php.write_text(
        CONFIG_PHP.replace("{redis_port}", str(redis_server.port))
        .replace("{datadir}", str(database.parent))
        .replace("{nextcloud_url}", stub.url)
    )
    assert database.name == "nextcloud.db"  # what dbname 'nextcloud' points at
    binary = str(Path(sys.executable).with_name("notify-push-gateway"))
    dump = subprocess.run([binary, str(config_php), "--dump-config"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert json.loads(dump.stdout)["database_url"] == f"sqlite://{database}"
    assert "secret" not in dump.stdout.replace('"secret"', "")

    port = free_port()
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, str(config_php), "--port", str(port), "--bind", "127.0.0.1",
             "--workers", "2"],
            stdout=log_file, stderr=log_file,
        )  # fmt: skip
    gateway = Gateway(port, 2, process, log_path)
    try:
        gateway.wait_ready()
        alice = Client(clients, gateway.ws_url)
        assert alice.login("alice", USERS["alice"]) == "authenticated"
        publisher.publish("notify_custom", json.dumps({"user": "alice", "message": "from-php"}))
        assert alice.recv() == "from-php"
        publisher.publish(
            "notify_storage_update", json.dumps({"storage": 1, "path": "files/a", "file_id": 3})
        )
        assert alice.recv() == "notify_file"
    finally:
        clients.close()
        assert gateway.stop() == 0, gateway.log()
