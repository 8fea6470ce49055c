"""A real single-node Slurm cluster in a temporary folder, for the sweep tests (issue 25).

`munged`, MariaDB, `slurmdbd`, `slurmctld` and `slurmd` run in the foreground as children of the
test process, each with its files (key, socket, data, pid, state, spool, logs) under the folder and
its ports chosen free; they are stopped by their own PIDs. Needs root and Debian's `slurm-wlm`,
`slurmdbd`, `munge` and `mariadb-server` (`make test` installs them).

Accounting is real (slurmdbd into MariaDB): without it `sacct` only says "Slurm accounting storage
is disabled", and submitit, which asks `sacct` for its jobs' states, waits forever for a job that
was cancelled. Slurm's job-completion log (jobcomp/filetxt) is kept too, as a second witness."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd")
START_TIMEOUT_S = 30.0
# Slurm job states before a job has ended (sacct), as opposed to COMPLETED, CANCELLED, FAILED, ...
UNFINISHED = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


def missing_reason() -> str | None:
    """Why the cluster cannot start here, or None."""
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if absent:
        return (f"Slurm is not installed ({', '.join(absent)} missing): `make test` installs slurm-wlm, slurmdbd, "
                "munge and mariadb-server with apt")
    if os.geteuid() != 0:
        return "the test Slurm cluster runs its daemons as root (SlurmUser=root); this process is not root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class SlurmCluster:
    root: Path
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    partition: str = "debug"
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        return self.root / "jobcomp.txt"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        munge = self.root / "munge"
        munge.mkdir(parents=True, mode=0o711)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for folder in ("state", "spool", "logs", "etc"):
            (self.root / folder).mkdir()
        socket_path = munge / "munge.socket"
        self._spawn("munged", [daemon("munged"), "--foreground", "--force", f"--socket={socket_path}",
                               f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={self.root / 'logs' / 'munged.log'}", f"--seed-file={munge / 'seed'}"])
        self._wait(socket_path.exists, "munged's socket")
        db_port, dbd_port = free_port(), free_port()
        self._start_mariadb(db_port)
        dbd_conf = self.root / "etc" / "slurmdbd.conf"  # read from SLURM_CONF's folder
        dbd_conf.write_text(self.slurmdbd_conf(socket_path, db_port, dbd_port))
        dbd_conf.chmod(0o600)
        self.conf.write_text(self.slurm_conf(socket_path, dbd_port))
        self._spawn("slurmdbd", [daemon("slurmdbd"), "-D"])
        self._wait(lambda: self.run("sacctmgr", "--noheader", "list", "cluster", check=False).returncode == 0,
                   "slurmdbd answering sacctmgr")
        self._spawn("slurmctld", [daemon("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [daemon("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(self._node_ready, f"node {self.node} idle in sinfo")

    def _start_mariadb(self, port: int) -> None:
        data, sock = self.root / "mariadb", self.root / "mariadb.sock"
        install = subprocess.run([daemon("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                                  "--auth-root-authentication-method=normal", "--skip-test-db"],
                                 capture_output=True, text=True, timeout=120)
        if install.returncode:
            raise RuntimeError(f"mariadb-install-db failed: {install.stderr[-2000:]}")
        self._spawn("mariadbd", [daemon("mariadbd"), "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                                 f"--port={port}", "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
                                 f"--pid-file={self.root / 'mariadb.pid'}", "--innodb-buffer-pool-size=16M"])
        grant = ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-e",
                 "CREATE USER 'slurm'@'127.0.0.1'; GRANT ALL ON *.* TO 'slurm'@'127.0.0.1'"]
        self._wait(lambda: subprocess.run(grant, capture_output=True).returncode == 0, "MariaDB accepting its user")

    def slurmdbd_conf(self, munge_socket: Path, db_port: int, dbd_port: int) -> str:
        r = self.root
        return "\n".join([
            "AuthType=auth/munge", f"AuthInfo=socket={munge_socket}",
            "DbdHost=localhost", "DbdAddr=127.0.0.1", f"DbdPort={dbd_port}", "SlurmUser=root",
            f"PidFile={r / 'slurmdbd.pid'}", f"LogFile={r / 'logs' / 'slurmdbd.log'}",
            "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1", f"StoragePort={db_port}",
            "StorageUser=slurm", "StorageLoc=slurm_acct_db",
        ]) + "\n"

    def slurm_conf(self, munge_socket: Path, dbd_port: int) -> str:
        r = self.root
        return "\n".join([
            "ClusterName=enginetest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge_socket}",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'logs' / 'slurmctld.log'}", f"SlurmdLogFile={r / 'logs' / 'slurmd.log'}",
            # No cgroups here (a container): processes tracked by /proc, no task binding.
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "ReturnToService=2",
            "SchedulerParameters=sched_interval=1", "KillWait=2",
            "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={dbd_port}",
            f"AccountingStoragePass={munge_socket}",  # with slurmdbd: the munge socket to reach it through
            "JobAcctGatherType=jobacct_gather/linux",
            "JobCompType=jobcomp/filetxt", f"JobCompLoc={self.jobcomp}",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=60 State=UP",
        ]) + "\n"

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "logs" / f"{name}.out", "w")
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                                cwd=self.root, start_new_session=True)

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            for name, p in self.processes.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}) before {what}: "
                                       f"{(self.root / 'logs' / f'{name}.out').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} after {START_TIMEOUT_S:.0f} s (logs in {self.root / 'logs'})")
            time.sleep(0.2)

    def _node_ready(self) -> bool:
        out = self.run("sinfo", "--noheader", "--format=%t", "--nodes", self.node, check=False)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env, check=check, timeout=30)

    def jobs(self) -> list[str]:
        """Ids of the jobs Slurm knows as queued or running (arrays as <array id>_<task>)."""
        out = self.run("squeue", "--noheader", "--format=%i")
        return out.stdout.split()

    def sacct(self, *job_ids: str, timeout_s: float = 30.0) -> dict[str, dict[str, str]]:
        """Slurm's accounting of these jobs (allocations, not steps) once each has ended: job id -> State,
        NodeList, ExitCode. A job's end reaches the accounting a moment after its launcher has seen its
        result: waited for, up to `timeout_s` (then what the accounting says, unfinished or not)."""
        columns = ("JobID", "State", "NodeList", "ExitCode")
        deadline = time.monotonic() + timeout_s
        while True:
            out = self.run("sacct", "--allocations", "--noheader", "--parsable2", f"--format={','.join(columns)}",
                           f"--jobs={','.join(job_ids)}")
            found = {}
            for line in out.stdout.splitlines():
                fields = dict(zip(columns, line.split("|")))
                fields["State"] = fields["State"].split()[0]  # "CANCELLED by 0" -> "CANCELLED"
                found[fields["JobID"]] = fields
            ended = all(j in found and found[j]["State"] not in UNFINISHED for j in job_ids)
            if ended or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def completed(self) -> dict[str, dict[str, str]]:
        """Finished jobs from the job-completion log: job id (an array's task as "<array id>_<task>",
        as submitit and squeue name it) -> its fields (JobState, ExitCode, NodeList, ...)."""
        if not self.jobcomp.exists():
            return {}
        records = {}
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            array = fields.get("ArrayJobId")
            records[f"{array}_{fields['ArrayTaskId']}" if array else fields["JobId"]] = fields
        return records

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons by their own PIDs, the last started first."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--full", f"--partition={self.partition}", check=False)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.run("squeue", "--noheader", check=False).stdout.strip():
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            p = self.processes.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
