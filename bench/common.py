"""What bench/run.py and bench/soak.py share: finding Envoy, and picking free loopback ports."""

from __future__ import annotations

import glob
import os
import socket
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
