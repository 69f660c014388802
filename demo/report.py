"""``mos report`` and ``mos export``: read a study database, write CSVs, a Markdown summary and PNG plots.

Outputs of :func:`write_report` (all written atomically, temp file + rename):

- ``ratings_long.csv``: one row per rating (rater, clip, system, prompt, kind, scale, value, seconds on page,
  excluded or not);
- ``exclusions.csv``: every screening rule a rater broke, with the reason;
- ``summary.csv``: per scale × system n, mean, std, t-based and bootstrap 95% CIs (kept raters, main clips);
- ``pairwise.csv``: every system pair per scale, test statistic, p and Holm-adjusted p;
- ``report.md``: the same tables in Markdown; ``<scale>.png``: means with both CIs per system.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sqlite3
import tempfile
from dataclasses import asdict
from pathlib import Path

from demo.analysis import TESTS, pairwise_tests, screen_raters, system_summary
from basekit.errors import UserError
from demo.store import TABLES
from demo.study import ScreeningRules, parse_screening


def _atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return buf.getvalue()


def open_db(db: str | Path) -> sqlite3.Connection:
    """Open a study database read-only; :class:`UserError` if it is missing or not a study database."""
    p = Path(db)
    if not p.is_file():
        raise UserError(f"database {p} does not exist; pass the --db file that `mos serve` wrote")
    try:
        con = sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise UserError(f"database {p} is not an SQLite file ({exc}); pass the --db file of a study") from None
    missing = [t for t in TABLES if t not in names]
    if missing:
        con.close()
        raise UserError(f"database {p} is not a MOS study database (missing tables {missing})")
    return con


def read_records(con: sqlite3.Connection) -> tuple[list[dict], dict[str, dict]]:
    """Ratings joined with their clips and page times; and the gold / attention expectations by clip id."""
    rows = con.execute(
        "SELECT r.rater_id, r.item_id, c.kind, c.system, c.prompt_id, r.scale, r.value, r.created_at,"
        " p.submitted_at - p.first_shown_at AS seconds_on_page"
        " FROM ratings r JOIN clips c ON c.clip_id = r.item_id"
        " LEFT JOIN page_times p ON p.rater_id = r.rater_id AND p.item_id = r.item_id"
        " ORDER BY r.id").fetchall()
    expect = {r["clip_id"]: json.loads(r["expect"]) for r in
              con.execute("SELECT clip_id, expect FROM clips WHERE expect IS NOT NULL")}
    return [dict(r) for r in rows], expect


def study_rules(con: sqlite3.Connection) -> ScreeningRules:
    row = con.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
    if row is None:
        return ScreeningRules()
    return parse_screening(json.loads(row["value"]).get("screening") or {})


def write_report(db: str | Path, out_dir: str | Path, rules: ScreeningRules | None = None, test: str = "mannwhitney",
                 n_boot: int = 2000, seed: int = 0) -> dict:
    """Analyse the study in ``db`` into ``out_dir``. Returns ``{"summary", "pairwise", "exclusions", "files"}``."""
    if test not in TESTS:
        raise UserError(f"--test {test!r} is unknown; choose one of {', '.join(TESTS)}")
    con = open_db(db)
    try:
        records, expect = read_records(con)
        rules = rules or study_rules(con)
    finally:
        con.close()
    if not records:
        raise UserError(f"database {db} holds no ratings yet; run the study (`mos serve`) first")
    exclusions = screen_raters(records, expect, rules)
    excluded = {e.rater_id for e in exclusions}
    kept = [r for r in records if r["kind"] == "main" and r["rater_id"] not in excluded]
    out = Path(out_dir)
    for r in records:
        r["excluded"] = int(r["rater_id"] in excluded)
    # The raw long table and the exclusions are written first, so they are there to read even when
    # screening leaves nobody.
    files = {
        "ratings_long.csv": _csv_text(records, ["rater_id", "item_id", "kind", "system", "prompt_id", "scale", "value",
                                                "excluded", "seconds_on_page", "created_at"]),
        "exclusions.csv": _csv_text([asdict(e) for e in exclusions], ["rater_id", "rule", "reason"]),
    }
    for name, text in files.items():
        _atomic_write(out / name, text)
    if not kept:
        raise UserError(f"every rater in {db} was excluded by screening ({len(excluded)} raters); the reasons are "
                        f"in {out / 'exclusions.csv'}; relax the rules with --rules if they are too strict")
    summary = system_summary(kept, n_boot=n_boot, seed=seed)
    pairwise = pairwise_tests(kept, test=test)
    files.update({
        "summary.csv": _csv_text(summary, list(summary[0])),
        "pairwise.csv": _csv_text(pairwise, list(pairwise[0]) if pairwise else ["scale"]),
    })
    n_raters = len({r["rater_id"] for r in records})
    files["report.md"] = _markdown(summary, pairwise, exclusions, n_raters, rules, test)
    for name, text in files.items():
        _atomic_write(out / name, text)
    for sc in sorted({r["scale"] for r in summary}):
        _atomic_write(out / f"{sc}.png", _plot([r for r in summary if r["scale"] == sc], sc))
        files[f"{sc}.png"] = ""
    return {"summary": summary, "pairwise": pairwise, "exclusions": exclusions,
            "files": sorted(str(out / n) for n in files)}


def _fmt(x: float | None, nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _markdown(summary, pairwise, exclusions, n_raters, rules, test) -> str:
    lines = ["# Listening test report", "",
             f"Raters: {n_raters}; excluded: {len({e.rater_id for e in exclusions})}. Screening rules: "
             f"`{json.dumps(asdict(rules))}`.", "", "## Per system (main clips, kept raters)", "",
             "| scale | system | n | raters | mean | std | 95% CI (t) | 95% CI (bootstrap raters × clips) |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in summary:
        lines.append(f"| {r['scale']} | {r['system']} | {r['n']} | {r['n_raters']} | {_fmt(r['mean'])} | "
                     f"{_fmt(r['std'])} | [{_fmt(r['ci_t_low'])}, {_fmt(r['ci_t_high'])}] | "
                     f"[{_fmt(r['ci_boot_low'])}, {_fmt(r['ci_boot_high'])}] |")
    lines += ["", f"## Pairwise tests ({test}, Holm-corrected within each scale)", "",
              "| scale | A | B | mean A − B | statistic | p | p (Holm) |", "|---|---|---|---:|---:|---:|---:|"]
    for r in pairwise:
        lines.append(f"| {r['scale']} | {r['system_a']} | {r['system_b']} | {_fmt(r['mean_diff'])} | "
                     f"{_fmt(r['statistic'])} | {r['p']:.4g} | {r['p_holm']:.4g} |")
    lines += ["", "## Exclusions", ""]
    lines += [f"- `{e.rater_id}` ({e.rule}): {e.reason}" for e in exclusions] or ["- none"]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], scale: str) -> bytes:
    """Means with t (thick) and bootstrap (thin) 95% CIs per system, as PNG bytes (Figure API, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.6 + 1.1 * len(rows), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = range(len(rows))
    means = [r["mean"] for r in rows]
    for x, r in zip(xs, rows):
        ax.plot([x, x], [r["ci_boot_low"], r["ci_boot_high"]], color="0.6", lw=1.2)
        ax.plot([x, x], [r["ci_t_low"], r["ci_t_high"]], color="C0", lw=4, solid_capstyle="butt")
    ax.plot(list(xs), means, "o", color="k")
    ax.set_xticks(list(xs), [r["system"] for r in rows], rotation=20, ha="right")
    ax.set_ylim(1, 5)
    ax.set_ylabel(f"{scale} (1–5)")
    ax.set_title(f"{scale}: mean, 95% CI t (blue), bootstrap (grey)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def export_tables(db: str | Path, out_dir: str | Path) -> list[str]:
    """Dump every table of the study database to ``<table>.csv`` (the study secret is left out of meta)."""
    con = open_db(db)
    written = []
    try:
        for t in TABLES:
            cur = con.execute(f"SELECT * FROM {t}")  # noqa: S608 - table names come from our own constant
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
            if t == "meta":
                rows = [r for r in rows if r["key"] != "secret"]
            _atomic_write(Path(out_dir) / f"{t}.csv", _csv_text(rows, cols))
            written.append(str(Path(out_dir) / f"{t}.csv"))
    finally:
        con.close()
    return written
