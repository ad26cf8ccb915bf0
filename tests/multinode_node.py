"""One "node" of a multi-node rehearsal on this machine: the rendered app's own lifecycle, with
`modal.Cluster.from_context()` answered by a fake cluster and the volume recording commits.

    python multinode_node.py APP.py NODE_RANK NODES VOLUME_DIR COMMIT_LOG
"""

from __future__ import annotations

import sys
from pathlib import Path

import modal

from launcher.backends.worker import LocalVolume, import_app, lifecycle


class FakeCluster:
    def __init__(self, rank: int, nodes: int) -> None:
        self.rank, self.nodes = rank, nodes

    def container_ips(self) -> list[str]:
        return ["127.0.0.1"] * self.nodes

    def container_rank(self) -> int:
        return self.rank


class RecordingVolume(LocalVolume):
    def __init__(self, path: Path, log: Path, rank: int) -> None:
        super().__init__(path)
        self.log, self.rank = log, rank

    def commit(self) -> None:
        super().commit()
        with open(self.log, "a") as f:
            f.write(f"commit by node {self.rank}\n")


def main(app: str, rank: str, nodes: str, volume: str, log: str) -> int:
    modal.Cluster.from_context = staticmethod(lambda: FakeCluster(int(rank), int(nodes)))
    module = import_app(Path(app))
    module.volume = RecordingVolume(Path(volume), Path(log), int(rank))
    _, hooks = lifecycle(module)
    for hook in hooks["enter_snap"] + hooks["enter"]:
        hook()
    result = hooks["train"][0](resume=True, steps=0)
    print("RESULT", result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
