"""Where the processes of a distributed run meet: rank 0's address and this node's rank.

On Modal, `modal.Cluster.from_context()` gives the containers' addresses and this
container's rank; torch.distributed (through Accelerate) connects to node 0. Without a
cluster (one node), everything is on the loopback.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from launcher.runtime import settings

PORT = 29500  # torch.distributed's usual rendezvous port; LAUNCH_MASTER_PORT overrides it


@dataclass(frozen=True)
class Rendezvous:
    master_addr: str
    port: int
    node_rank: int
    nodes: int

    @property
    def is_global_rank0_node(self) -> bool:
        return self.node_rank == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rendezvous(cluster: Any, nodes: int) -> Rendezvous:
    """`cluster` is a modal.Cluster (or a stand-in with the same two methods), or None."""
    if cluster is None or nodes <= 1:
        return Rendezvous("127.0.0.1", _free_port(), 0, 1)
    ips = list(cluster.container_ips())
    rank = int(cluster.container_rank())
    if len(ips) != nodes:
        raise RuntimeError(f"the cluster has {len(ips)} containers, the spec asks for {nodes} nodes")
    return Rendezvous(ips[0], settings.current().master_port or PORT, rank, nodes)
