"""Write a scoring result as ``scores.json`` (atomic), ``scores.md`` (Markdown table) and ``scores.png`` (bars),
and build the side-by-side table of ``eval-gen compare``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from basekit.atomic import atomic_write_text
from basekit.errors import UserError

#: metric key -> (label, direction) in display order.
METRIC_ROWS = (
    ("fad", "FAD", "↓"),
    ("fad_inf", "FAD∞", "↓"),
    ("kad", "KAD", "↓"),
    ("kl_softmax", "KL (softmax)", "↓"),
    ("kl_bernoulli", "KL (Bernoulli)", "↓"),
    ("clap_score", "CLAP score", "↑"),
    ("order_clap", "Order acc. (CLAP)", "↑"),
    ("order_detector", "Order acc. (detector)", "↑"),
)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def metric_cell(m: dict) -> str:
    """``value [low, high]`` for distances with a CI, ``value (R²=…)`` for FAD∞, ``value (n=…)`` for shares."""
    s = _fmt(m.get("value"))
    if m.get("ci"):
        s += f" [{_fmt(m['ci']['low'])}, {_fmt(m['ci']['high'])}]"
    if "r2" in m:
        s += f" (R²={m['r2']:.3f})"
    if "n" in m and "correct" in m:
        s += f" (n={m['n']})"
    return s


def markdown_table(result: dict) -> str:
    rows = ["| metric | value |", "|---|---|"]
    for key, label, arrow in METRIC_ROWS:
        if key in result.get("metrics", {}):
            rows.append(f"| {label} {arrow} | {metric_cell(result['metrics'][key])} |")
    info = [f"generated clips: {result.get('n_gen')}", f"reference clips: {result.get('n_ref')}"]
    if "backend" in result:
        b = result["backend"]
        info.append(f"backend: {b['name']} (dim {b['dim']}, {b['sample_rate']} Hz, pooling {b['pooling']}, "
                    f"{b['n_gen_rows']}/{b['n_ref_rows']} rows)")
    sil = result.get("silent", {})
    if sil.get("gen") or sil.get("ref"):
        thr = result.get("silence", {}).get("threshold_dbfs")
        what = f" (peak below {thr:g} dBFS before any gain)" if thr is not None else ""
        info.append(f"silent or near-silent clips{what}: {len(sil.get('gen', []))} of {result.get('n_gen')} generated, "
                    f"{len(sil.get('ref', []))} of {result.get('n_ref')} reference ({result.get('on_silent')})")
    for k, v in result.get("skipped", {}).items():
        info.append(f"skipped: {v} {k}")
    for w in result.get("warnings", []):
        info.append(f"warning: {w}")
    return "\n".join(rows) + "\n\n" + "\n".join(f"- {s}" for s in info) + "\n"


def bar_chart(result: dict, path: str | os.PathLike) -> Path:
    """``scores.png``: one small panel per metric, each on its own y-axis (FAD, KAD, KL, CLAP score and accuracies
    have different scales and must not share one), titled with the metric and its direction (↓ lower is better,
    ↑ higher is better); the bootstrap CI as an error bar where there is one (no zero-width bars). Written
    atomically with the Agg canvas (no pyplot)."""
    from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib is heavy; loaded only when this path runs)

    from basekit.plotting import save_figure  # noqa: PLC0415 (basekit.plotting loads matplotlib; only the chart needs it)

    rows = [(k, lab, arrow) for k, lab, arrow in METRIC_ROWS
            if result.get("metrics", {}).get(k, {}).get("value") is not None]
    if not rows:
        raise UserError("no metric with a value to plot; run with --no-plot, or ask for a metric that can be computed")
    fig = Figure(figsize=(max(2.2, 2.0 * len(rows)), 3.0), layout="constrained")
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for ax, (k, lab, arrow) in zip(axes, rows):
        m = result["metrics"][k]
        v = float(m["value"])
        ax.bar([0], [v], width=0.6, color="#4c72b0")
        ci = m.get("ci")
        if ci and ci.get("high") is not None and ci["high"] > ci["low"]:
            ax.errorbar([0], [v], yerr=[[max(v - ci["low"], 0.0)], [max(ci["high"] - v, 0.0)]], fmt="none",
                        capsize=4, ecolor="black")
        if k.startswith("order_") or k == "clap_score":
            ax.set_ylim(0 if k.startswith("order_") else min(0.0, v * 1.2), 1.0)  # shares / cosines: fixed ends
        else:
            ax.margins(y=0.12)
        ax.set_xticks([])
        ax.set_title(f"{lab} {arrow}", fontsize=9)
        ci_txt = f" [{ci['low']:.4g}, {ci['high']:.4g}]" if ci and ci.get("high") is not None and ci["high"] > ci["low"] else ""
        ax.set_xlabel(f"{v:.4g}{ci_txt}", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("eval-gen scores (↓ lower is better, ↑ higher is better)", fontsize=9)
    return save_figure(fig, path)


def write_report(result: dict, out_dir: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
    """``out_dir/scores.json``, ``scores.md`` and (``plot``) ``scores.png``; returns their paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": atomic_write_text(d / "scores.json", json.dumps(result, indent=2, default=str) + "\n"),
             "md": atomic_write_text(d / "scores.md", markdown_table(result))}
    if plot:
        paths["png"] = bar_chart(result, d / "scores.png")
    return paths


def load_result(path: str | os.PathLike) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "scores.json"
    if not p.is_file():
        raise UserError(f"scores file not found: {p} (give a scores.json written by eval-gen score)")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{p} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(d, dict) or "metrics" not in d:
        raise UserError(f"{p} is not an eval-gen scores file (no 'metrics' key)")
    return d


def compare_table(results: Sequence[dict], names: Sequence[str]) -> str:
    """Markdown table: one row per metric present in any run, one column per run."""
    if len(results) != len(names):
        raise ValueError("one name per result")
    head = "| metric | " + " | ".join(names) + " |"
    rows = [head, "|---|" + "---|" * len(names)]
    for key, label, arrow in METRIC_ROWS:
        if any(key in r["metrics"] for r in results):
            cells = [metric_cell(r["metrics"][key]) if key in r["metrics"] else "—" for r in results]
            rows.append(f"| {label} {arrow} | " + " | ".join(cells) + " |")
    backends = [r.get("backend", {}).get("key") for r in results]
    if len({b for b in backends if b}) > 1:
        rows.append("")
        rows.append("Note: the runs used different embedding backends or weights; their distances are not comparable.")
    return "\n".join(rows) + "\n"
