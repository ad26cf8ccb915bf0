"""One "node" of a multi-node rehearsal on this machine: the rendered app's lifecycle as the local
worker runs it, with a fake cluster standing in for `modal.Cluster.from_context()` and the
volume recording commits.

    python multinode_node.py APP.py NODE_RANK NODES VOLUME_DIR COMMIT_LOG
"""

from __future__ import annotations

import sys
from pathlib import Path

from launcher.backends import worker
from launcher.runtime.storage.volume import LocalVolume


class FakeCluster:
    def __init__(self, rank: int, nodes: int) -> None:
        self.rank, self.nodes = rank, nodes

    def container_ips(self) -> list[str]:
        return ["127.0.0.1"] * self.nodes

    def container_rank(self) -> int:
        return self.rank


class RecordingVolume(LocalVolume):
    """The volume as one node's container sees it (its own working copy); records the commits
    that carried changes."""

    def __init__(self, committed: Path, work: Path, log: Path, rank: int) -> None:
        super().__init__(committed, work)
        self.log, self.rank = log, rank

    def commit(self) -> None:
        before = sorted(p.name for p in self.committed.rglob("*"))
        super().commit()
        if sorted(p.name for p in self.committed.rglob("*")) != before:
            with open(self.log, "a") as f:
                f.write(f"commit by node {self.rank}\n")


def main(app: str, rank: str, nodes: str, volume: str, log: str) -> int:
    work = Path(volume).with_name(f"{Path(volume).name}@node{rank}")
    result = worker.attempt(Path(app), volume=RecordingVolume(Path(volume), work, Path(log), int(rank)),
                            cluster=FakeCluster(int(rank), int(nodes)))
    print("RESULT", result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
