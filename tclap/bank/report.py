"""What a build says about its bank: the printed summary and ``OUT/README.md`` (from the ``bank.json`` dict)."""

from __future__ import annotations

from collections import Counter, defaultdict

from tclap.bank.config import CONVERSIONS, REJECT_REASONS


def class_table(bank: dict) -> str:
    """The Markdown table of classes: phrase, recordings, held out, minutes, packages, licences."""
    rows = ["| class | phrase | recordings | held out | minutes | packages | licences |",
            "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for label, c in sorted(bank["classes"].items()):
        pk = ", ".join(p.split(":", 1)[1] for p in c["packages"])
        rows.append(f"| {label} | {c['phrase']} | {c['recordings']} | {c['heldout']} | {c['minutes']:.2f} | {pk} | {', '.join(c['licences'])} |")
    n = bank["counts"]
    rows.append(f"| **{n['classes']} classes** | | **{n['recordings']}** | **{n['heldout']}** | **{n['minutes']:.2f}** | | |")
    return "\n".join(rows) + "\n"


def _left_out_lines(bank: dict, limit: int) -> list[str]:
    lines = []
    by_reason = defaultdict(list)
    for r in bank["rejected"]:
        by_reason[r["reason"]].append(r)
    for reason, text in REJECT_REASONS.items():
        rs = by_reason.get(reason, [])
        if not rs:
            continue
        lines.append(f"- {text} ({reason}): {len(rs)}")
        for r in rs[:limit]:
            lines.append(f"  - {r['package']} {r['path']} [{r['label']}]: {r['detail']}")
        if len(rs) > limit:
            lines.append(f"  - ... and {len(rs) - limit} more (bank.json lists them all)")
    for d in bank["dropped_classes"]:
        lines.append(f"- class {d['label']} dropped: {d['detail']}")
    return lines


def _converted_lines(bank: dict, limit: int) -> list[str]:
    lines = []
    for note, text in CONVERSIONS.items():
        fs = bank["converted"].get(note, [])
        if fs:
            shown = ", ".join(fs[:limit]) + (f", ... ({len(fs) - limit} more)" if len(fs) > limit else "")
            lines.append(f"- {text} ({note}): {len(fs)}: {shown}")
    return lines


def summary_text(bank: dict, limit: int = 5) -> str:
    """The printed build summary: counts, classes, what was converted, what was left out and why."""
    n = bank["counts"]
    out = [f"bank: {n['classes']} classes, {n['recordings']} recordings ({n['heldout']} held out), {n['minutes']:.1f} minutes"]
    out.append(class_table(bank))
    conv = _converted_lines(bank, limit)
    if conv:
        out += ["converted:"] + conv
    left = _left_out_lines(bank, limit)
    out += [f"left out: {sum(n['rejected'].values())} recording(s), {n['dropped_classes']} class(es)"] + left
    if n["unused_over_cap"]:
        out.append(f"not used (over --max-per-class): {n['unused_over_cap']}")
    if bank["missing_packages"]:
        out.append(f"packages not installed (skipped): {', '.join(bank['missing_packages'])}")
    return "\n".join(out)


def readme_text(bank: dict) -> str:
    s = bank["settings"]
    lic = Counter(f["licence"] for f in bank["files"])
    pk = Counter(f["package"] for f in bank["files"])
    lines = [
        "# Clip bank of recorded sound events", "",
        f"Built by `tclap bank build`: mono {s['sr']} Hz 16-bit WAV, silence trimmed, at most {s['max_seconds']:g} s, "
        f"peak -1 dBFS. Held-out recordings (listed in `heldout.txt`, {s['min_heldout']} or more per class) are whole "
        "recordings that no training draw uses. `bank.json` gives every file's source package, path, licence and "
        "attribution.", "",
        class_table(bank),
        "## Licences", "",
        "| licence | recordings |", "| --- | ---: |",
        *[f"| {k} | {v} |" for k, v in sorted(lic.items())], "",
        "## Source packages", "",
        "| package | recordings |", "| --- | ---: |",
        *[f"| {k} | {v} |" for k, v in sorted(pk.items())], "",
        "## Converted", "", *(_converted_lines(bank, 3) or ["- nothing"]), "",
        "## Left out", "", *(_left_out_lines(bank, 3) or ["- nothing"]), "",
    ]
    return "\n".join(lines)
