"""Start the loopback chat server (bench/loopback_server.py) in its own process, for benchmarks
and for the gateway's error-handling tests."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SERVER = Path(__file__).with_name("loopback_server.py")


@dataclass
class Loopback:
    process: subprocess.Popen
    port: int

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.api_base}/stats", timeout=10) as response:
            return json.loads(response.read())

    def set_latency(self, seconds: float) -> None:
        """Answer the calls that arrive from now on after `seconds` (those waiting keep theirs)."""
        request = urllib.request.Request(f"{self.api_base}/latency", data=json.dumps({"latency": seconds}).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextmanager
def loopback_server(latency: float = 0.2, *args: str) -> Iterator[Loopback]:
    process = subprocess.Popen([sys.executable, str(SERVER), "--port", "0", "--latency", str(latency), *args],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"loopback server did not start: {line!r}")
        yield Loopback(process, int(line.split()[1]))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
