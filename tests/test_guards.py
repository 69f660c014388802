"""The suite's own guards work: outside sockets fail fast, loopback stays open, packages import offline."""

import importlib
import socket
import subprocess
import sys

import pytest


def test_outside_connection_is_blocked():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(RuntimeError, match="network connection"):
            s.connect(("93.184.216.34", 80))
    finally:
        s.close()


def test_loopback_is_open():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.close()
    srv.close()


@pytest.mark.parametrize("pkg", ["tclap", "eval_gen", "audioldm_cond", "demo"])
def test_import_opens_no_socket_and_changes_no_global_state(pkg):
    # A fresh interpreter with every socket call replaced by a failure: importing must not touch the network,
    # append to sys.path or set environment variables.
    code = (
        "import os, socket, sys\n"
        "def boom(*a, **k): raise SystemExit('network at import time')\n"
        "socket.socket.connect = boom; socket.create_connection = boom; socket.getaddrinfo = boom\n"
        "env = dict(os.environ); path = list(sys.path)\n"
        f"import {pkg}\n"
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())\n"
        "assert sys.path == path\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_import_layers():
    """tclap is the base; eval_gen may import tclap; audioldm_cond may import both; demo stands alone."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    allowed = {
        "tclap": {"tclap"},
        "eval_gen": {"eval_gen", "tclap"},
        "audioldm_cond": {"audioldm_cond", "eval_gen", "tclap"},
        "demo": {"demo"},
    }
    ours = set(allowed)
    bad = []
    for pkg, ok in allowed.items():
        for f in (root / pkg).rglob("*.py"):
            tree = ast.parse(f.read_text(), filename=str(f))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for n in names:
                    top = n.split(".")[0]
                    if top in ours and top not in ok:
                        bad.append(f"{f.relative_to(root)} imports {n}")
    assert not bad, bad
