"""What bench/run.py, bench/soak.py and bench/experiments/ab.py share: finding Envoy, picking free loopback
ports, and running one Envoy process."""

from __future__ import annotations

import glob
import http.client
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, NoReturn

ROOT = Path(__file__).resolve().parent.parent


def find_envoy(die: Callable[[str], NoReturn]) -> str:
    """`ENVOY_BIN`, else the project venv's Envoy (`make venv`); `die` with the reason otherwise."""
    env = os.environ.get("ENVOY_BIN")
    if env:
        if not os.path.isfile(env):
            die(f"ENVOY_BIN={env} does not exist")
        return env
    found = sorted(glob.glob(str(ROOT / ".venv/lib/python3.*/site-packages/envoy/_bin/envoy")))
    if not found:
        die("Envoy not found: set ENVOY_BIN or run `make venv`")
    return found[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1: all bound at once, so none is handed out twice."""
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Envoy:
    """One Envoy (`--concurrency 1`, a random `--base-id`, log to `log_path`), optionally pinned to
    `cpu` with taskset, or run under `wrapper` (valgrind, say). `die` is the caller's fatal-error
    function."""

    def __init__(self, binary: str, config: Path, admin_port: int, log_path: Path,
                 die: Callable[[str], NoReturn], cpu: str | None = None,
                 wrapper: list[str] | None = None):
        self.admin_port = admin_port
        self.log_path = log_path
        self.die = die
        self.log_file = open(log_path, "w")
        pin = ["taskset", "-c", cpu] if cpu is not None else []
        self.proc = subprocess.Popen(
            pin + (wrapper or []) + [binary, "-c", str(config), "--concurrency", "1",
                   "--base-id", str(random.randint(20000, 90000)), "-l", "info",
                   "--disable-hot-restart"],
            stdout=self.log_file, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the admin `/ready` answers 200; `die` if Envoy exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.die(f"Envoy exited with {self.proc.returncode}; log: {self.log_path}\n"
                         + self.log_path.read_text()[-4000:])
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=1)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.die(f"Envoy not ready after {timeout:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_file.close()
