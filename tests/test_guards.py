"""The suite's own guards work: outside sockets fail fast, loopback stays open, packages import offline."""

import ast
import importlib
import re
import socket
import subprocess
import sys

import pytest
from pathlib import Path


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


@pytest.mark.parametrize("pkg", ["basekit", "tclap", "eval_gen", "audioldm_cond", "demo", "conductor"])
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


# The import layers, bottom to top (README "Layout"): what each package may import.
LAYERS = {
    "basekit": {"basekit"},
    "tclap": {"basekit", "tclap"},
    "eval_gen": {"basekit", "tclap", "eval_gen"},
    "audioldm_cond": {"basekit", "tclap", "eval_gen", "audioldm_cond"},
    "demo": {"basekit", "demo"},
    "conductor": {"basekit", "tclap", "eval_gen", "audioldm_cond", "demo", "conductor"},
}
ROOT = Path(__file__).resolve().parents[1]


def _modules():
    """{module name: (path, ast)} for every module of the six packages."""
    out = {}
    for pkg in LAYERS:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            rel = f.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
            out[".".join(parts)] = (f, ast.parse(f.read_text(), filename=str(f)))
    return out


def _imports(name, tree, is_pkg):
    """(imported module, lineno) for every import in the module, at any depth, relative ones resolved."""
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([mod] if mod else []))
            yield mod, node.lineno
            for a in node.names:  # ``from pkg import module`` imports the module
                yield f"{mod}.{a.name}", node.lineno


def _docstrings(tree):
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_import_layers():
    """No package imports a layer above it (basekit < tclap < eval_gen < audioldm_cond; demo on basekit; conductor on all)."""
    bad = []
    for name, (f, tree) in _modules().items():
        ok = LAYERS[name.split(".")[0]]
        for mod, line in _imports(name, tree, f.name == "__init__.py"):
            top = mod.split(".")[0]
            if top in LAYERS and top not in ok:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, bad


def test_no_module_name_string_crosses_a_layer():
    """A string that names a module of a higher layer (``"-m", "eval_gen.cli"``, ``import_module("demo.x")``) is a
    hidden import; docstrings may mention other layers, code may not."""
    pattern = re.compile(r"\b(" + "|".join(LAYERS) + r")\.[a-z_]\w*")
    bad = []
    for name, (f, tree) in _modules().items():
        ok = LAYERS[name.split(".")[0]]
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                for m in pattern.finditer(node.value):
                    if m.group(1) not in ok:
                        bad.append(f"{f.relative_to(ROOT)}:{node.lineno} names {m.group(0)!r}")
    assert not bad, bad


def test_the_string_check_sees_a_crossing(tmp_path):
    # the check above must be able to fail: a hand-made module body with a forbidden string
    tree = ast.parse('"""docs may say eval_gen.cli"""\nCMD = ["-m", "eval_gen.cli"]\n')
    docs = _docstrings(tree)
    hits = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs and "eval_gen." in n.value]
    assert hits == ["eval_gen.cli"]


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan), i.e. the import circles."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_cycles_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    """No circle among the project's modules, counting imports inside functions too (a deferred import that
    only breaks a circle at import time is still a circle in the design). A package's ``__init__`` counts as
    importing nothing of its own submodules' users; importing a submodule counts as importing every package above it."""
    mods = _modules()
    graph = {}
    for name, (f, tree) in mods.items():
        deps = set()
        for mod, _ in _imports(name, tree, f.name == "__init__.py"):
            # the deepest of our modules that ``mod`` names (``tclap.models.load_clap`` -> ``tclap.models``)
            # and every package above it: importing ``a.b.c`` runs ``a/b/__init__.py`` first, so a package whose
            # ``__init__`` imports back into the importer is a circle too
            parts = mod.split(".")
            while parts and ".".join(parts) not in mods:
                parts.pop()
            while parts:
                target = ".".join(parts)
                if target != name and not name.startswith(target + "."):
                    deps.add(target)
                parts.pop()
        graph[name] = deps
    circles = _cycles(graph)
    assert not circles, circles
