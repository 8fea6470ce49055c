"""Which scheduler job ran each sweep job, and how it ended: a JSON-lines file beside the job's shard.

A job started by submitit (on Slurm, or its local executor) appends a line when it starts (its job
id, host and log) and one when it ends (done, or the error it raised). The file lives on the shared
filesystem with the shard, so the launching process reads it wherever the job ran: the merge stores
the job ids in `sweep_jobs.scheduler_jobs`, and a failed sweep names each job that did not finish,
with its job id and the error from its log. A job the cluster killed (scancel, time or memory limit,
a lost node) writes no end line: its log says why."""

from __future__ import annotations

import json
import os
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.kernel.spec_redaction import redact_text

# This launch of the sweep, in its jobs' environment: tells this launch's attempts from earlier ones.
LAUNCH_ENV = "ENGINE_SWEEP_LAUNCH"
LOG_TAIL_LINES = 6
MAX_ERROR_CHARS = 1500


@dataclass(frozen=True)
class Attempt:
    executor: str
    job_id: str
    host: str
    log: str
    launch: str
    outcome: str | None = None  # "done", "error", or None: never finished (killed), or still running
    error: str | None = None

    def scheduler_job(self) -> dict[str, str]:
        return {"executor": self.executor, "job_id": self.job_id, "host": self.host, "log": self.log}


def attempts_path(shard: Path) -> Path:
    return shard.with_suffix(".attempts.jsonl")


def scheduler_job() -> dict[str, str] | None:
    """The submitit job this process runs as (None outside submitit: basic or joblib launchers)."""
    executor = os.environ.get("SUBMITIT_EXECUTOR")
    if not executor:
        return None
    import submitit

    env = submitit.JobEnvironment()
    return {"executor": executor, "job_id": env.job_id, "host": socket.gethostname(), "log": str(env.paths.stderr),
            "launch": os.environ.get(LAUNCH_ENV, "")}


def record(shard: Path, job: dict[str, str] | None, event: str, error: str | None = None) -> None:
    """Append one line (a single write: lines of concurrent attempts do not interleave)."""
    if job is None:
        return
    line = {**job, "event": event, **({"error": redact_text(error)[:MAX_ERROR_CHARS]} if error else {})}
    with open(attempts_path(shard), "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def read_attempts(shard: Path) -> list[Attempt]:
    """The shard's attempts in the order they started, each with its outcome."""
    path = attempts_path(shard)
    if not path.exists():
        return []
    attempts: dict[tuple[str, str], dict[str, Any]] = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
        key = (line.get("executor", ""), line.get("job_id", ""))
        fields = attempts.setdefault(key, {k: str(line.get(k, "")) for k in ("executor", "job_id", "host", "log",
                                                                            "launch")})
        if line.get("event") in ("done", "error"):
            fields["outcome"], fields["error"] = line["event"], line.get("error")
    return [Attempt(**fields) for fields in attempts.values()]


def log_tail(log: str) -> str:
    """The last lines of a job's log, secrets masked (the log is the job's; it may hold anything)."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = deque((ln.rstrip() for ln in f if ln.strip()), maxlen=LOG_TAIL_LINES)
    except OSError as exc:
        return f"(its log {log} cannot be read: {exc.strerror})"
    return redact_text("\n".join(lines))[-MAX_ERROR_CHARS:] or f"(its log {log} is empty)"


def unfinished(attempts: list[Attempt], launch: str) -> list[Attempt]:
    """This launch's attempts that did not end with "done"."""
    return [a for a in attempts if a.launch == launch and a.outcome != "done"]


def describe(attempt: Attempt) -> str:
    """Why an attempt did not finish: the error it raised, else the end of its log."""
    if attempt.outcome == "error":
        why = f"raised {attempt.error}"
    else:
        why = ("stopped without finishing (cancelled, over its time or memory limit, its node lost; or still "
               f"running: check the scheduler's queue). The end of its log:\n{log_tail(attempt.log)}")
    return f"{attempt.executor} job {attempt.job_id} on {attempt.host} {why}\n    (log: {attempt.log})"
