"""Regenerate the example outputs README.md shows, from the commands that print them.

An output block is a fenced block right after ``<!-- readme-output: PREFIX -->``; it shows what the one README
command starting with ``PREFIX`` prints. This script runs each README section that shows outputs exactly as
``tests/test_readme.py`` runs it (same parser, environment and order, one fresh working folder per section) and
writes what the commands printed into those blocks; ``tests/test_readme.py`` fails when a block differs from what
its command prints at test time.

    python scripts/readme_outputs.py            # rewrite the blocks that changed (README.md, atomically)
    python scripts/readme_outputs.py --check    # exit 1 listing the blocks that differ; change nothing

Run it from the repository's virtual environment (the README's commands come from its ``bin/``). A section whose
commands fail leaves README.md untouched and exits 2 with their output.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def _doc_test():
    """tests/test_readme.py, with the suite's offline environment (tests/conftest.py) set first."""
    _load("readme_conftest", ROOT / "tests" / "conftest.py")
    return _load("test_readme", ROOT / "tests" / "test_readme.py")


def up_to_last_shown(t, in_section: list) -> list:
    """The section's bash blocks, cut after the last command whose output a block shows (no later command can
    change what an earlier one printed, so the rest need not run)."""
    import dataclasses  # noqa: PLC0415

    shown = {cmd for _, cmd in t.output_blocks(in_section)}
    bash = [b for b in in_section if b.lang == "bash"]
    last = max(i for i, b in enumerate(bash) if shown & set(b.commands()))
    cut = bash[last]
    keep: list[str] = []
    for line in cut.lines:
        keep.append(line)
        if shown & set(t.split_and(line.strip())):
            last_line = len(keep)
    return bash[:last] + [dataclasses.replace(cut, lines=keep[:last_line])]


def new_outputs(t, text: str) -> tuple[dict[int, list[str]], list[str]]:
    """Run every section of ``text`` that shows outputs; returns ({opening fence line: new block lines}, failures)."""
    blocks = t.parse_blocks(text)
    sections = list(dict.fromkeys(b.section for b in blocks if b.shows))
    fresh: dict[int, list[str]] = {}
    failures: list[str] = []
    for section in sections:
        in_section = [b for b in blocks if b.section == section]
        runnable = up_to_last_shown(t, in_section)
        print(f"readme_outputs: running section {section!r} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="readme-outputs-") as tmp:
            if any("STUDY.yaml" in c for b in runnable for c in b.commands()):
                t.write_study(Path(tmp))
            outputs: dict[str, str] = {}
            values = {"port": str(t.free_port()), "llm": "http://127.0.0.1:9/v1"}
            failed, skipped = t.run_blocks(runnable, Path(tmp), values, outputs)
        failures += failed
        if skipped:
            failures.append(f"section {section!r}: the shipped models are missing, so these did not run: {skipped}")
        for block, cmd in t.output_blocks(in_section):
            if cmd in outputs:
                fresh[block.line] = t.shown_output(outputs[cmd])
    return fresh, failures


def rewrite(text: str, blocks, fresh: dict[int, list[str]]) -> tuple[str, list[str]]:
    """``text`` with each output block's lines replaced by ``fresh``; returns (new text, where it changed)."""
    lines = text.split("\n")
    changed = []
    # Bottom-up, so that a block's new length does not move the blocks above it.
    for block in sorted((b for b in blocks if b.line in fresh), key=lambda b: b.line, reverse=True):
        if fresh[block.line] == block.lines:
            continue
        changed.append(block.where)
        first = block.line  # 0-based index of the first content line (the fence is at block.line - 1)
        lines[first: first + len(block.lines)] = fresh[block.line]
    return "\n".join(lines), sorted(changed)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/readme_outputs.py", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="list the blocks that differ and exit 1; change nothing")
    p.add_argument("--readme", default=str(ROOT / "README.md"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    t = _doc_test()
    readme = Path(a.readme)
    text = readme.read_text(encoding="utf-8")
    blocks = t.parse_blocks(text)
    fences = text.split("\n")
    if any(b.shows and fences[b.line - 1].startswith((" ", "\t")) for b in blocks):
        print("readme_outputs: an output block is indented inside a list; keep output blocks at the top level",
              file=sys.stderr)
        return 2
    fresh, failures = new_outputs(t, text)
    if failures:
        print("readme_outputs: README commands failed; README.md is unchanged:\n\n" + "\n\n".join(failures),
              file=sys.stderr)
        return 2
    new_text, changed = rewrite(text, blocks, fresh)
    if a.check:
        for where in changed:
            print(f"differs: {where}")
        print(f"readme_outputs: {len(changed)} of {len(fresh)} output block(s) differ from what their commands print")
        return 1 if changed else 0
    if changed:
        from basekit.atomic import atomic_write_text  # noqa: PLC0415

        atomic_write_text(readme, new_text)
    for where in changed:
        print(f"rewrote: {where}")
    print(f"readme_outputs: {len(changed)} of {len(fresh)} output block(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
