"""Evaluation reports: ``metrics.json`` (machine-readable) and ``metrics.md`` (a Markdown table)."""

from __future__ import annotations

import json
from pathlib import Path

from basekit.atomic import atomic_write_text

#: metric key -> row label of the Markdown table, in display order.
LABELS = {
    "t_classify_t2a": "T-Classify text-to-audio (%)",
    "t_classify_a2t": "T-Classify audio-to-text (%)",
    "t_classify_t2a_audio_blind": "T-Classify T2A, audio-blind control (%)",
    "r1_t2a": "R@1 text-to-audio (%)",
    "r5_t2a": "R@5 text-to-audio (%)",
    "r10_t2a": "R@10 text-to-audio (%)",
    "map10_t2a": "mAP@10 text-to-audio (%)",
    "r1_a2t": "R@1 audio-to-text (%)",
    "r5_a2t": "R@5 audio-to-text (%)",
    "r10_a2t": "R@10 audio-to-text (%)",
    "map10_a2t": "mAP@10 audio-to-text (%)",
    "zero_shot_top1": "zero-shot top-1 (%)",
}


def markdown_table(metrics: dict, counts: dict | None = None, title: str | None = None) -> str:
    """A two-column Markdown table of the metrics present (percentages to one decimal), then the counts."""
    lines = [f"## {title}", ""] if title else []
    lines += ["| metric | value |", "|---|---|"]
    for key, label in LABELS.items():
        if key in metrics:
            lines.append(f"| {label} | {metrics[key]:.1f} |")
    if counts:
        lines += ["", "| count | n |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in counts.items()]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, metrics: dict, counts: dict, info: dict) -> tuple[Path, Path]:
    """Write ``out_dir/metrics.json`` (metrics at the top level, plus ``counts`` and ``info``) and ``metrics.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(metrics)
    payload["counts"] = counts
    payload["info"] = info
    j = out / "metrics.json"
    atomic_write_text(j, json.dumps(payload, indent=2, sort_keys=False) + "\n")
    md = out / "metrics.md"
    atomic_write_text(md, markdown_table(metrics, counts, title=f"{info.get('model', 'model')} on {info.get('data', 'data')}"))
    return j, md
