"""One study, one running writer: an advisory lock beside the study database (`<db>.lock`).

Every command that writes anything of a study (its database, its report folder, its exports) holds
the lock for its whole duration; a second such command is refused before it calls or writes
anything. A sweep's launching process holds it while its jobs run: the jobs write only their own
shards and take no lock. Commands that only print (plan, summary) take none.

It is an flock(2) lock: the kernel drops it when its holder exits, however it exits (kill -9
included), so a stale lock never blocks a rerun. The file names its holder (command, pid, host),
for the refusal message, and is removed when the lock is released normally. On NFS, Linux maps flock
onto the server's byte-range locks (NFSv4, or NFSv3 with lockd running); a filesystem without working
locks makes every writing command fail with a clear error rather than run unguarded.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.kernel.errors import StoreBusy


@dataclass
class _Held:
    fd: int
    pid: int  # the process that took it: a forked child inherits the table, never the ownership
    depth: int
    created: list[Path]  # folders made for the lock file, removed again if still empty


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def lock_path(db: str | Path) -> Path:
    db = Path(db).resolve()
    return db.with_name(db.name + ".lock")


@contextmanager
def study_lock(db: str | Path, command: str) -> Iterator[None]:
    """Hold the study's writer lock (re-entrant within this process), or raise StoreBusy naming the
    command that holds it. `command` is what the refusal of another command will name, e.g. `run -m`."""
    path = lock_path(db)
    with _guard:
        held = _held.get(path)
        if held is not None and held.pid == os.getpid():
            held.depth += 1
        else:
            created: list[Path] = []
            try:
                created = _make_folders(path.parent)
                fd = _acquire(path, db, command)
            except BaseException:
                _remove_empty(created)
                raise
            held = _held[path] = _Held(fd, os.getpid(), 1, created)
    try:
        yield
    finally:
        with _guard:
            held.depth -= 1
            if held.depth == 0:
                del _held[path]
                _release(path, held)


def _acquire(path: Path, db: str | Path, command: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a refused command just removed the folder it had made
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        except OSError as exc:
            raise StoreBusy(f"cannot create the study's lock {path} ({exc.strerror}): the folder of store.path "
                            "must be writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreBusy(_busy_message(path, db)) from None
            raise StoreBusy(f"cannot lock {path} ({exc.strerror}): its filesystem does not support file locks, "
                            "so one writer per study cannot be ensured; put store.path on a local disk (or on NFS "
                            "with locking enabled)") from None
        # The holder we raced may have removed the file after we opened it: hold the file at the path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    holder = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(holder) + "\n").encode())
    return fd


def lock_holder(db: str | Path) -> str | None:
    """Who the lock file names, e.g. "`run` (pid 12 on host, since 2026-12-01 10:00:00)": its holder,
    or the last one (a holder killed with -9 leaves the file; the lock itself went with it)."""
    try:
        holder = json.loads(lock_path(db).read_text())
        command, host, since = (_printable(holder[k]) for k in ("command", "host", "since"))
        return f"`{command}` (pid {int(holder['pid'])} on {host}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):  # no file, or its holder has not written its name yet
        return None


def _busy_message(path: Path, db: str | Path) -> str:
    who = lock_holder(db) or "another command"
    return (f"{db} is being written by {who}: one study has one running writer (run, run -m, judge, report and "
            f"export each hold it). Nothing was run or written; wait for that command to finish (or stop it), "
            f"then rerun this one. The lock is {path}; it is released when its holder exits, even if killed")


def _printable(value: object) -> str:
    """A field of the lock file as it may reach a terminal: any process could have written the file."""
    return "".join(c if c.isprintable() else "?" for c in str(value))[:80]


def _release(path: Path, held: _Held) -> None:
    try:
        if os.path.samestat(os.fstat(held.fd), os.stat(path)):
            path.unlink()  # while still locked: a waiter that opened it sees it gone and retries
    except FileNotFoundError:
        pass
    finally:
        os.close(held.fd)
    _remove_empty(held.created)


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return the ones created, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    try:
        for f in reversed(missing):
            f.mkdir(exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise StoreBusy(f"cannot create {exc.filename} for the study's lock ({exc.strerror}): the folder of "
                        "store.path must be writable") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """A command refused or failed before writing leaves no empty folder behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
