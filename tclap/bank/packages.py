"""Which registry packages a bank build reads, whether they are here, and the command that installs them.

Three managers, each asked the ordinary way:

- ``apt`` (Debian): installed when ``dpkg-query`` reports ``install ok installed``. With ``root`` other than ``/``
  (a folder holding packages unpacked with ``dpkg -x PKG.deb ROOT``, which needs no root rights) a package is
  there when ``ROOT/usr/share/doc/PKG`` exists, as ``dpkg -x`` leaves it. Its files are read under ``root``.
- ``pip``: an installed distribution of this Python (``importlib.metadata``); its files are read relative to
  the folder it was installed into.
- ``npm``: ``NPM_PREFIX/node_modules/NAME``.

Nothing here downloads anything unless :func:`install` is called, which runs the printed command.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from basekit.errors import UserError
from tclap.bank.table import Table


@dataclass(frozen=True)
class Place:
    """Where a package's files are read from, and its copyright/licence file (or None)."""

    base: Path
    copyright: Path | None


def _apt_installed(name: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip().endswith("install ok installed")


def locate(manager: str, name: str, root: str | os.PathLike = "/", npm_prefix: str | os.PathLike = ".") -> Place | None:
    """Where ``manager:name`` is installed, or None when it is not."""
    if manager == "apt":
        r = Path(root)
        doc = r / "usr/share/doc" / name
        if r.resolve() == Path("/"):
            if not _apt_installed(name):
                return None
        elif not doc.is_dir():
            return None
        cp = doc / "copyright"
        return Place(r, cp if cp.is_file() else None)
    if manager == "pip":
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return None
        base = Path(str(dist.locate_file("")))
        lic = next((base / str(f) for f in (dist.files or []) if Path(str(f)).name.upper().startswith(("LICENSE", "LICENCE", "COPYING"))), None)
        return Place(base, lic)
    if manager == "npm":
        base = Path(npm_prefix) / "node_modules" / name
        if not (base / "package.json").is_file():
            return None
        lic = next((p for p in sorted(base.iterdir()) if p.name.upper().startswith(("LICENSE", "LICENCE", "COPYING"))), None)
        return Place(base, lic)
    raise UserError(f"unknown package manager {manager!r} (apt, pip or npm)")


def install_commands(missing: list[tuple[str, str]], npm_prefix: str | os.PathLike = ".") -> list[list[str]]:
    """One command per manager that installs ``missing`` ``(manager, name)`` pairs."""
    cmds = []
    apt = [n for m, n in missing if m == "apt"]
    pip = [n for m, n in missing if m == "pip"]
    npm = [n for m, n in missing if m == "npm"]
    if apt:
        cmds.append(["apt-get", "install", "-y", "--no-install-recommends", *apt])
    if pip:
        cmds.append([sys.executable, "-m", "pip", "install", *pip])
    if npm:
        cmds.append(["npm", "install", "--prefix", str(npm_prefix), *npm])
    return cmds


def format_command(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def install(missing: list[tuple[str, str]], npm_prefix: str | os.PathLike = ".", log=print) -> None:
    """Run the install commands; apt needs root (``sudo`` is used when present and we are not root)."""
    for cmd in install_commands(missing, npm_prefix):
        if cmd[0] == "apt-get" and hasattr(os, "geteuid") and os.geteuid() != 0:
            if shutil.which("sudo") is None:
                raise UserError(f"installing Debian packages needs root: run as root: {format_command(cmd)}")
            cmd = ["sudo", *cmd]
        if shutil.which(cmd[0]) is None and not os.path.isabs(cmd[0]):
            raise UserError(f"cannot install: {cmd[0]} is not on this machine (install {' '.join(cmd[-1:])} by hand)")
        log(f"running: {format_command(cmd)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(cmd, env=env)
        if r.returncode != 0:
            raise UserError(f"install command failed (exit {r.returncode}): {format_command(cmd)}; fix it and re-run")


def needs(table: Table, root: str = "/", npm_prefix: str = ".") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(installed, missing)`` ``(manager, package)`` pairs of the table."""
    have, miss = [], []
    for mp in table.packages():
        (have if locate(*mp, root=root, npm_prefix=npm_prefix) else miss).append(mp)
    return have, miss
