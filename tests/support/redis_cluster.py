"""A real Redis Cluster of throw-away redis-server processes, for integration tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.devstack import free_port, start_redis_server
from tests.support.processes import timeout, wait_for


@dataclass
class ClusterNodes:
    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}" for port in self.ports]

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[-1])

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait()

    def stop(self) -> None:
        for port in list(self.processes):
            process = self.processes.pop(port)
            process.terminate()
            process.wait(timeout(10))


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster-bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port in taken or port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        info = client.cluster("info")  # parsed by redis-py into a dict
    except redis.RedisError:
        return False
    finally:
        client.close()
    return isinstance(info, dict) and info.get("cluster_state") == "ok"


def start_redis_cluster(workdir: Path, masters: int = 3) -> ClusterNodes:
    """``masters`` nodes, no replicas; losing one leaves the others serving their slots."""
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli is needed to create a cluster"
    ports: set[int] = set()
    for _ in range(masters):
        ports.add(free_cluster_port(ports))
    cluster = ClusterNodes(sorted(ports))
    try:
        for port in cluster.ports:
            cluster.processes[port] = start_redis_server(
                workdir, port, "--cluster-enabled", "yes",
                "--cluster-config-file", str(workdir / f"nodes-{port}.conf"),
                "--cluster-node-timeout", "2000",
                "--cluster-require-full-coverage", "no",
            )  # fmt: skip
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout(60),
        )  # fmt: skip
        wait_for(lambda: all(cluster_ok(p) for p in cluster.ports), 30, "the cluster to be ok")
    except BaseException:
        cluster.stop()
        raise
    return cluster
