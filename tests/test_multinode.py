"""Multi-node logic offline: the rendezvous from a (fake) modal.Cluster, and a two-"node"
rehearsal on this machine in which only the global rank 0 writes and commits checkpoints
and every rank resumes from the same one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from multinode_node import FakeCluster
from runjob import RECIPES, checkpoints, probe_spec, write_spec

from launcher.load import load_spec
from launcher.render import CodeSource, render
from launcher.runtime.lifecycle.rendezvous import PORT, rendezvous


def test_rendezvous_comes_from_the_cluster_context() -> None:
    where = rendezvous(FakeCluster(rank=1, nodes=2), nodes=2)
    assert (where.master_addr, where.port, where.node_rank, where.nodes) == ("127.0.0.1", PORT, 1, 2)
    assert not where.is_global_rank0_node


def test_one_node_needs_no_cluster() -> None:
    where = rendezvous(None, nodes=1)
    assert (where.master_addr, where.node_rank, where.nodes) == ("127.0.0.1", 0, 1)


def test_a_cluster_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(RuntimeError, match="the cluster has 3 containers, the spec asks for 2 nodes"):
        rendezvous(FakeCluster(rank=0, nodes=3), nodes=2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_nodes(tmp_path: Path, app: Path, volume: Path, log: Path) -> list[str]:
    # Two processes per node: Accelerate's launcher only forms a process group for > 1 per node
    # (on Modal a multi-node job has 8 per node).
    env = {**os.environ, "LAUNCH_PROCESSES": "2", "LAUNCH_MASTER_PORT": str(_free_port()),
           "LAUNCH_RUN_DIR": str(tmp_path / "run"),
           "PROBE_DIR": str(tmp_path), "PYTHONPATH": os.pathsep.join([str(RECIPES.parent), str(tmp_path)]),
           "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen([sys.executable, str(RECIPES.parent / "multinode_node.py"), str(app),
                               str(rank), "2", str(volume), str(log)], cwd=tmp_path,
                              # each node's container works in its own copy of the volume
                              env={**env, "LAUNCH_CHECKPOINT_DIR": str(volume.with_name(f"volume@node{rank}"))},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    return outputs


def test_two_nodes_train_together_and_only_global_rank0_commits(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the user's recipe module is found from the working directory
    spec_path = write_spec(tmp_path, probe_spec(
        steps=6, compute={"gpu": "H100", "gpu_count": 8, "nodes": 2}, snapshot="cpu"))
    spec = load_spec(spec_path).spec
    app = tmp_path / "app.py"
    app.write_text(render(spec, "job.yaml", CodeSource("local")))
    assert "@modal.clustered(size=2, rdma=False)" in app.read_text()
    volume, log = tmp_path / "volume", tmp_path / "commits.log"

    outputs = _run_nodes(tmp_path, app, volume, log)
    assert checkpoints(volume / "probe") == ["step-00000003", "step-00000006"]
    assert set(log.read_text().splitlines()) == {"commit by node 0"}  # node 1 changed nothing
    manifest = json.loads((volume / "probe" / "step-00000006" / "manifest.json").read_text())
    assert manifest["extra"]["world_size"] == 4
    assert {f"recipe-{r}.pt" for r in range(4)} <= set(manifest["files"])  # gathered to rank 0
    ranks = [[json.loads(x)["digest"] for x in (tmp_path / f"probe-rank{r}.jsonl").read_text().splitlines()]
             for r in range(4)]
    assert ranks[0] == ranks[1] == ranks[2] == ranks[3] and len(ranks[0]) == 6  # DDP across nodes
    assert "RESULT {'node_rank': 1}" in outputs[1]

    # Both nodes resume from the checkpoint that global rank 0 picked.
    spec_path.write_text(spec_path.read_text().replace("steps: 6", "steps: 8"))
    app.write_text(render(load_spec(spec_path).spec, "job.yaml", CodeSource("local")))
    outputs = _run_nodes(tmp_path, app, volume, log)
    assert "resumed from step-00000006" in outputs[0]
    rows = [json.loads(x) for x in (tmp_path / "probe-rank3.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows][-2:] == [6, 7]
    assert checkpoints(volume / "probe")[-1] == "step-00000008"
