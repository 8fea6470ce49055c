"""A running study's live snapshot, beside its database: `<db>.live.json`.

DuckDB lets no other process open a file a writer holds, not even to read. So the writing process
publishes where it stands (engine/analyze/live.py builds it) and `watch`, `summary` and `plan` read
that instead. The file is replaced whole (a temporary file, then os.replace): a reader sees the
previous snapshot or the next, never half of one. It names its writer (pid, host, the process's
start time): a writer killed with -9 leaves a snapshot whose process is gone, which readers report
as a run that is not running; the next run replaces it.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

FORMAT = 1
# A writer refreshes its snapshot at least every HEARTBEAT_S; one of another host is taken for gone
# when its snapshot is older than STALE_S.
HEARTBEAT_S = 10.0
STALE_S = 60.0
ENDED = ("finished", "failed", "interrupted", "stopped by budget")  # states a run leaves its snapshot in


def snapshot_path(db: str | Path) -> Path:
    db = Path(db).resolve()
    return db.with_name(db.name + ".live.json")


def this_process() -> dict[str, Any]:
    """Who writes the snapshot: enough to tell later whether that process still runs."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid())}


def write_snapshot(db: str | Path, data: dict[str, Any]) -> None:
    """Replace the snapshot atomically: whole, or not at all."""
    path = snapshot_path(db)
    body = orjson.dumps({"format": FORMAT, **data, "written_at": time.time()},
                        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY, default=str)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@dataclass(frozen=True)
class Snapshot:
    data: dict[str, Any]
    alive: bool  # its writer still runs
    path: Path

    @property
    def state(self) -> str:
        return str(self.data.get("state", "running"))

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def running(self) -> bool:
        return self.alive and not self.ended

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.data["written_at"])

    @property
    def written_at(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.data["written_at"]))


def read_snapshot(db: str | Path) -> Snapshot | None:
    """The study's last snapshot (None: no run has published one, or it cannot be read)."""
    path = snapshot_path(db)
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT \
            or not isinstance(data.get("written_at"), (int, float)):
        return None
    age = max(0.0, time.time() - data["written_at"])
    return Snapshot(data, _alive(data.get("writer"), age), path)


def _alive(writer: Any, age_s: float) -> bool:
    """Whether the process that wrote a snapshot still runs (the same process: a pid is reused)."""
    if not isinstance(writer, dict):
        return False
    if writer.get("host") != socket.gethostname():  # another host's process: by its heartbeat
        return age_s < STALE_S
    try:
        pid = int(writer["pid"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process with that pid
        pass
    start = writer.get("process_start")
    return start is None or start == _process_start(pid)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which no later process with the
    same pid shares; None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces
