"""``mos report`` and ``mos export``: read a study database, write CSVs, a Markdown summary and PNG plots.

Outputs of :func:`write_report` (all written atomically through :mod:`basekit.atomic`):

- ``ratings_long.csv``: one row per rating (rater, clip, system, prompt, kind, scale, value, seconds on page,
  listening time and plays where stored, excluded or not);
- ``exclusions.csv``: every screening rule a rater broke, with the reason;
- ``summary.csv``: per scale × system n, raters, clips, mean, std, the primary 95% interval from the crossed
  rater × clip model (``ci_low``/``ci_high``, ``df``, ``sd_rater``/``sd_clip``/``sd_resid``) and the independent
  t interval (``ci_t_low``/``ci_t_high``) (kept raters, main clips);
- ``pairwise.csv``: every system pair per scale, paired by prompt: mean difference with its interval, the test
  statistic, p and Holm-adjusted p;
- ``report.md``: the same tables in Markdown; ``<scale>.png``: means with both intervals per system.

The statistics are in :mod:`demo.analysis`; docs/mos-statistics.md explains them. Every SQL statement is in
:class:`demo.store.Store` (opened read-only here).
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from dataclasses import asdict
from pathlib import Path

from basekit.atomic import atomic_write_bytes
from basekit.errors import UserError
from demo.analysis import DEFAULT_TEST, TESTS, pairwise_tests, screen_raters, system_summary
from demo.store import TABLES, Store
from demo.study import ScreeningRules, parse_screening

LONG_COLUMNS = ["rater_id", "item_id", "kind", "system", "prompt_id", "scale", "value", "excluded", "seconds_on_page",
                "listen_s", "plays", "created_at"]


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return buf.getvalue()


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` (with parents) or say in one line why it cannot hold the report."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--out {out} is a file, not a folder; pass a folder path for the report") from None
    except OSError as exc:
        raise UserError(f"--out {out} cannot be created ({exc.strerror or exc}); pass a folder you can write to") \
            from None
    return out


def _write(path: Path, data: str | bytes) -> None:
    try:
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); pass an --out folder you can write to") \
            from None


def study_rules(store: Store) -> ScreeningRules:
    """The screening rules stored with the study (its ``screening`` section), or the defaults."""
    raw = store.get_meta("study")
    if raw is None:
        return ScreeningRules()
    return parse_screening(json.loads(raw).get("screening") or {})


def load_rules_file(path: str | Path) -> ScreeningRules:
    """Screening rules from a ``--rules`` YAML/JSON file: the rules mapping itself, or a study-like file with a
    ``screening:`` section. Keys and defaults: :class:`demo.study.ScreeningRules`, docs/mos-statistics.md."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--rules file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"--rules file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--rules file {p} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise UserError(f"--rules file {p} cannot be read ({exc.strerror or exc})") from None
    try:
        return parse_screening((raw or {}).get("screening", raw) if isinstance(raw, dict) else raw)
    except UserError as exc:
        raise UserError(f"--rules file {p}: {exc}") from None


def write_report(db: str | Path, out_dir: str | Path, rules: ScreeningRules | None = None,
                 test: str = DEFAULT_TEST, level: float = 0.95) -> dict:
    """Analyse the study in ``db`` into ``out_dir``. Returns ``{"summary", "pairwise", "exclusions", "files"}``."""
    if test not in TESTS:
        raise UserError(f"--test {test!r} is unknown; choose one of {', '.join(TESTS)}")
    store = Store.open_readonly(db)
    try:
        records, expect = store.rating_records(), store.check_expectations()
        rules = rules or study_rules(store)
    finally:
        store.close()
    if not records:
        raise UserError(f"database {db} holds no ratings yet; run the study (`mos serve`) first")
    out = prepare_out_dir(out_dir)
    exclusions = screen_raters(records, expect, rules)
    excluded = {e.rater_id for e in exclusions}
    kept = [r for r in records if r["kind"] == "main" and r["rater_id"] not in excluded]
    for r in records:
        r["excluded"] = int(r["rater_id"] in excluded)
    # The raw long table and the exclusions are written first, so they are there to read even when
    # screening leaves nobody.
    files = {
        "ratings_long.csv": _csv_text(records, [c for c in LONG_COLUMNS if c in records[0]]),
        "exclusions.csv": _csv_text([asdict(e) for e in exclusions], ["rater_id", "rule", "reason"]),
    }
    for name, text in files.items():
        _write(out / name, text)
    if not kept:
        raise UserError(f"every rater in {db} was excluded by screening ({len(excluded)} raters); the reasons are "
                        f"in {out / 'exclusions.csv'}; relax the rules with --rules if they are too strict")
    summary = system_summary(kept, level=level)
    pairwise = pairwise_tests(kept, test=test, level=level)
    files.update({
        "summary.csv": _csv_text(summary, list(summary[0])),
        "pairwise.csv": _csv_text(pairwise, list(pairwise[0]) if pairwise else ["scale"]),
    })
    n_raters = len({r["rater_id"] for r in records})
    files["report.md"] = _markdown(summary, pairwise, exclusions, n_raters, rules, test)
    for name in ("summary.csv", "pairwise.csv", "report.md"):
        _write(out / name, files[name])
    for sc in sorted({r["scale"] for r in summary}):
        _write(out / f"{sc}.png", _plot([r for r in summary if r["scale"] == sc], sc))
        files[f"{sc}.png"] = ""
    return {"summary": summary, "pairwise": pairwise, "exclusions": exclusions,
            "files": sorted(str(out / n) for n in files)}


def summary_lines(summary: list[dict]) -> list[str]:
    """One console line per scale × system: n, mean, the primary interval and the t interval."""
    return [f"{r['scale']:8s} {r['system']:24s} n={r['n']:4d} mean={r['mean']:.2f} "
            f"CI=[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] (raters x clips) "
            f"CI_t=[{_fmt(r['ci_t_low'])}, {_fmt(r['ci_t_high'])}]" for r in summary]


def _fmt(x: float | None, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "∞" if math.isinf(x) else f"{x:.{nd}f}"


def _markdown(summary, pairwise, exclusions, n_raters, rules, test) -> str:
    lines = ["# Listening test report", "",
             f"Raters: {n_raters}; excluded: {len({e.rater_id for e in exclusions})}. Screening rules: "
             f"`{json.dumps(asdict(rules))}`.", "", "## Per system (main clips, kept raters)", "",
             "The primary 95% interval treats raters and clips as samples (crossed random effects, moment estimates, "
             "Satterthwaite df); the t interval treats every rating as independent and is too narrow when raters "
             "or clips differ. See docs/mos-statistics.md.", "",
             "| scale | system | n | raters | clips | mean | 95% CI (raters × clips) | df | sd rater / clip / resid "
             "| 95% CI (t, independent) |",
             "|---|---|---:|---:|---:|---:|---|---:|---|---|"]
    for r in summary:
        lines.append(f"| {r['scale']} | {r['system']} | {r['n']} | {r['n_raters']} | {r['n_clips']} | "
                     f"{_fmt(r['mean'])} | [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {_fmt(r['df'], 1)} | "
                     f"{_fmt(r['sd_rater'])} / {_fmt(r['sd_clip'])} / {_fmt(r['sd_resid'])} | "
                     f"[{_fmt(r['ci_t_low'])}, {_fmt(r['ci_t_high'])}] |")
    lines += ["", f"## Pairwise comparisons (paired by prompt; test {test}, Holm-corrected within each scale)", "",
              "| scale | A | B | prompts | mean A − B | 95% CI | statistic | p | p (Holm) |",
              "|---|---|---|---:|---:|---|---:|---:|---:|"]
    for r in pairwise:
        lines.append(f"| {r['scale']} | {r['system_a']} | {r['system_b']} | {r['n_pairs']} | {_fmt(r['mean_diff'])} | "
                     f"[{_fmt(r['diff_low'])}, {_fmt(r['diff_high'])}] | {_fmt(r['statistic'])} | "
                     f"{_pfmt(r['p'])} | {_pfmt(r['p_holm'])} |")
    lines += ["", "## Exclusions", ""]
    lines += [f"- `{e.rater_id}` ({e.rule}): {e.reason}" for e in exclusions] or ["- none"]
    return "\n".join(lines) + "\n"


def _pfmt(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.4g}"


def _plot(rows: list[dict], scale: str) -> bytes:
    """Means with the primary (thick) and t (thin) 95% intervals per system, as PNG bytes (Figure API, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (matplotlib is heavy; loaded only when this path runs)
    from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib is heavy; loaded only when this path runs)
    from matplotlib.lines import Line2D  # noqa: PLC0415 (matplotlib is heavy; loaded only when this path runs)

    # wide enough for the title and legend even with one or two systems
    fig = Figure(figsize=(max(4.8, 1.6 + 1.1 * len(rows)), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(rows)))
    for x, r in zip(xs, rows):
        ax.plot([x, x], [r["ci_low"], r["ci_high"]], color="C0", lw=5, solid_capstyle="butt", alpha=0.8)
        ax.plot([x, x], [r["ci_t_low"], r["ci_t_high"]], color="C3", lw=1.5)
    ax.plot(xs, [r["mean"] for r in rows], "o", color="k", zorder=3)
    ax.set_xticks(xs, ["\n".join(textwrap.wrap(r["system"], 16)) or r["system"] for r in rows])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(1, 5)
    ax.set_ylabel(f"{scale} (1–5)")
    ax.set_title(f"{scale}: mean and 95% intervals", fontsize=10, pad=24)
    ax.legend(handles=[Line2D([], [], color="C0", lw=5, alpha=0.8, label="raters × clips (primary)"),
                       Line2D([], [], color="C3", lw=1.5, label="t, ratings independent")],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def export_tables(db: str | Path, out_dir: str | Path) -> list[str]:
    """Dump every table of the study database to ``<table>.csv`` (meta keys naming a secret are left out)."""
    store = Store.open_readonly(db)
    try:
        tables = [(t, store.table_rows(t)) for t in TABLES]
    finally:
        store.close()
    out = prepare_out_dir(out_dir)
    written = []
    for t, found in tables:
        if found is None:  # a table that an older database does not have
            continue
        cols, rows = found
        if t == "meta":
            rows = [r for r in rows if "secret" not in r["key"]]
        _write(out / f"{t}.csv", _csv_text(rows, cols))
        written.append(str(out / f"{t}.csv"))
    return written
