"""Test-suite guards: the hub's offline switches and a socket guard.

Every test runs offline: the Hugging Face offline switches are set, and any attempt to open a socket to
an address outside the loopback range fails at once with ``BlockedNetworkError`` instead of hanging, so a
hidden download fails its test. Loopback stays open for the app tests and for gloo process groups.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE"):
    os.environ[_k] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# One BLAS/OpenMP thread per test process: the suite runs as `pytest -n 2` on 2 cores, and oversubscribed torch
# threads spin against each other (seen here: up to 30x slower). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


class BlockedNetworkError(RuntimeError):
    """Raised when a test tries to reach a non-loopback address."""


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", "", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: refuse


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    if not _is_local(address):
        raise BlockedNetworkError(f"test tried to open a network connection to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise BlockedNetworkError(f"test tried to open a network connection to {address!r}")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost", "") and not _is_local((host if isinstance(host, str) else host.decode(), 0)):
        raise BlockedNetworkError(f"test tried to resolve {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(scope="session")
def rng_seed() -> int:
    return 0


@pytest.fixture(autouse=True)
def _reopen_closed_log_streams():
    """A library logger first used inside a ``capsys`` test keeps that test's (later closed) stream and then prints
    "--- Logging error ---" into whichever test logs next; point such handlers back at the live stderr."""
    import logging
    import sys

    yield
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False):
                h.stream = sys.stderr  # not setStream(): it flushes the closed stream first
