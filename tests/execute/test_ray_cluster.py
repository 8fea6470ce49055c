"""A study on a two-node Ray cluster on loopback (a head and a second node started with `ray start`,
each with its own temp dir and resources): its trials land on both nodes, and killing the second
node mid-run loses nothing and doubles nothing (compared with a clean run of the same design)."""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from fixtures import loopback_server  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
STUDY = str(REPO / "bench" / "studies" / "gateway_bench.yaml")
STARTED = "Ray runtime started"


@dataclass
class Node:
    process: subprocess.Popen  # `ray start --block`, leader of its own process group
    log: Path

    def wait_started(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while STARTED not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Every process this node started (raylet, its workers, agents), and nothing else."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Killed, not `ray stop`ped: the node's temp dir goes with the fixture (a SIGTERM'ed head
        outlived the 20 s it was given)."""
        self.kill()
        self.process.wait(timeout=10)


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # what a driver needs to join: the address and the cluster's token
    head: Node
    second: Node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster():
    """Head and second node on 127.0.0.1, each `--num-cpus=1` with a resource of its own, a small
    object store, its own temp dir (short: Ray's socket paths must fit 107 bytes) and the
    cluster's own auth token (Ray 2.60 turns token auth on for `ray start --head`)."""
    root = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    token = root / "token"
    token.write_text(secrets.token_hex(32))
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "LOOPBACK_API_KEY": "k-test"}  # a node's workers read the key from their own environment
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000",
              "--disable-usage-stats"]

    def start(name: str, *args: str) -> Node:
        (root / name).mkdir()
        log = root / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen([RAY, "start", *common, f"--temp-dir={root / name}", *args], env=env,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        return Node(process, log)

    head = start("head", "--head", f"--port={port}", "--include-dashboard=false", '--resources={"head": 1}')
    nodes = [head]
    try:
        head.wait_started()
        second = start("node2", f"--address=127.0.0.1:{port}", '--resources={"node2": 1}')
        nodes.append(second)
        second.wait_started()
        yield Cluster(f"127.0.0.1:{port}", {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token",
                                            "RAY_AUTH_TOKEN_PATH": str(token), "LOOPBACK_API_KEY": "k-test"},
                      head, second)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def results(db: Path) -> dict[str, object]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "trials": con.execute("SELECT trial_id, cell_id, seed, status, attempt FROM trials ORDER BY 1").fetchall(),
            # (not the request hash: it names the server, another port on each run)
            "calls": con.execute("SELECT trial_id, purpose, CAST(messages AS VARCHAR), response_text, status"
                                 " FROM calls ORDER BY 1, 2").fetchall(),
            "verdicts": con.execute("SELECT subject_id, label FROM verdicts ORDER BY 1").fetchall(),
        }
    finally:
        con.close()


def run_args(server, db: Path, *extra: str) -> list[str]:
    return ["run", STUDY, f"models.loopback.api_base={server.api_base}",
            f"store.path={db}", "design.seeds=1", "--no-report", "--no-progress", *extra]


@pytest.mark.slow
def test_a_study_spreads_over_two_nodes_and_survives_losing_one(ray_cluster, tmp_path, run_main):
    # The clean run: the local executor, the same design.
    clean = tmp_path / "clean.duckdb"
    with loopback_server(0.01) as server:  # in this process: the local executor, no process boundary checked
        out = run_main(*run_args(server, clean), env={"LOOPBACK_API_KEY": "k-test"})
    assert out.returncode == 0, out.stderr[-3000:]

    db = tmp_path / "cluster.duckdb"
    # One trial at a time per node (each node has one CPU): two worker processes to start, not four.
    ray_args = ["executor=ray", "executor.ray.address=auto", "executor.ray.cpus_per_trial=1"]
    with loopback_server(1.0) as server:  # a second per call: a trial is in flight on node 2 when it dies
        run = subprocess.Popen([sys.executable, "-m", "engine", *run_args(server, db, *ray_args)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **ray_cluster.env})
        deadline = time.monotonic() + 300
        # Each node has played a few trials, and both are calling now (so one call is node 2's).
        while (not ((s := server.stats())["requests"] >= 8 and s["in_flight"] == 2) and run.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        ray_cluster.second.kill()  # mid-run: the raylet, its workers and agents, at once
        server.set_latency(0.01)  # the calls in flight keep their second; the trials left on the head need not
        stdout, stderr = run.communicate(timeout=600)
        served = server.stats()["requests"]
    assert run.returncode == 0, stderr[-3000:]
    print(stdout)
    assert "ray executor" in stdout and "50 done now" in stdout
    assert "trials played again after their Ray worker or node was lost" in stdout  # the kill caught trials

    got, want = results(db), results(clean)
    assert got == want  # every trial once, each with its one call and the same reply: nothing lost or doubled
    assert len(got["trials"]) == 50 and served >= 50
    nodes = duckdb.connect(str(db), read_only=True).execute(
        "SELECT node_id, count(*) FROM trials GROUP BY 1").fetchall()
    assert len(nodes) == 2 and all(node for node, _ in nodes), nodes  # both nodes played trials

    # A rerun has nothing to do (and, with nothing to do, joins no cluster: in this process).
    with loopback_server(0.01) as server:
        again = run_main(*run_args(server, db, *ray_args), env=ray_cluster.env)
        assert server.stats()["requests"] == 0
    assert again.returncode == 0, again.stderr[-3000:]
    assert "50 already finished, 0 done now" in again.stdout and re.search(r"ray\s+executor", again.stdout)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_a_rerun_with_every_trial_finished_joins_no_ray_cluster(run_main, tmp_path, monkeypatch):
    """Nothing left to play: no cluster to join, no actors to start (here there is no cluster at all)."""
    db = tmp_path / "study.duckdb"
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with loopback_server(0.01) as server:
        first = run_main(*run_args(server, db), env={"LOOPBACK_API_KEY": "k-test"})
        assert first.returncode == 0, first.stderr[-3000:]
        again = run_main(*run_args(server, db, "executor=ray", "executor.ray.address=auto"))
        assert server.stats()["requests"] == 50
    assert again.returncode == 0, again.stderr[-3000:]
    assert "50 already finished, 0 done now" in again.stdout and re.search(r"ray\s+executor", again.stdout)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
