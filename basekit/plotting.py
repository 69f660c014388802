"""PNG plots for reports: log-mel spectrograms with sound-event spans, score bars, overlaid histograms.

Spectrograms are drawn in dB on a **fixed** colour range, so that a near-silent clip looks near-silent instead of
being stretched to fill the colour map: ``20 log10`` of the mel magnitude, from AudioLDM's floor (its front end
clamps magnitudes at 1e-5: -100 dB) to ``+30 dB`` (a full-scale tone reads about +20 dB through AudioLDM's
Slaney mel), the colour bar labelled in dB. Bars draw an error bar only where there is a spread (no zero-width
bars); histogram counts have integer ticks.

Every figure is a bare ``matplotlib.figure.Figure`` rendered by the Agg canvas (never ``pyplot``: no global
figure registry, no GUI backend, safe in threads and servers) and written atomically (temp file + rename).
The ``*_figure`` functions return the ``Figure`` (e.g. for TensorBoard's ``add_figure``); the ``plot_*``
functions write a PNG and return its path.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from basekit.atomic import atomic_write_bytes
from basekit.errors import UserError

_EVENT_COLOURS = ("tab:red", "tab:cyan", "tab:orange", "tab:green", "tab:pink", "tab:olive", "tab:purple")
#: The fixed colour range of spectrograms, in dB of mel magnitude (AudioLDM's floor 1e-5 = -100 dB).
SPEC_DB_RANGE = (-100.0, 30.0)
_LN_TO_DB = 20.0 / math.log(10.0)  # natural-log magnitude -> dB


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().float().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be numeric, got {type(x).__name__}") from None
    return arr


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render ``fig`` to PNG with the Agg canvas and write it atomically; returns the path."""
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise UserError(f"plot path {p} must end in .png")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(p, buf.getvalue())


def _check_events(events: Sequence[Mapping[str, Any]] | None, duration: float) -> list[tuple[str, float, float]]:
    out = []
    for i, ev in enumerate(events or []):
        if not isinstance(ev, Mapping) or not {"label", "onset", "offset"} <= set(ev):
            raise UserError(f"event {i} must be a dict with 'label', 'onset' and 'offset' (seconds), got {ev!r}")
        on, off = float(ev["onset"]), float(ev["offset"])
        if not (math.isfinite(on) and math.isfinite(off)) or on < 0 or off < on:
            raise UserError(f"event {i} ({ev['label']!r}) has onset {on} and offset {off}; need 0 <= onset <= offset")
        if on > duration + 1e-6:
            raise UserError(
                f"event {i} ({ev['label']!r}) starts at {on:.3f} s, after the spectrogram ends ({duration:.3f} s): "
                "check hop_length / sample_rate"
            )
        out.append((str(ev["label"]), on, min(off, duration)))
    return out


def spectrogram_figure(
    mel: Any,
    hop_length: int,
    sample_rate: int,
    title: str = "",
    events: Sequence[Mapping[str, Any]] | None = None,
    values: str = "ln",
    db_range: tuple[float, float] | None = SPEC_DB_RANGE,
) -> Figure:
    """A log-mel spectrogram figure in dB, on a fixed colour range, with optional labelled event spans.

    Args:
        mel: ``[frames, n_mels]`` or ``[1, frames, n_mels]`` (numpy or torch) log-mel values.
        hop_length: samples per frame, to put seconds on the time axis.
        sample_rate: sample rate of the audio the mel came from.
        title: figure title.
        events: ``[{"label", "onset", "offset"}]`` in seconds, drawn as shaded spans with labels, onset and
            offset lines.
        values: ``"ln"``: natural-log magnitudes (AudioLDM's front end and VAE), converted to dB (``20 log10``);
            ``"db"``: already dB.
        db_range: the colour range in dB (default :data:`SPEC_DB_RANGE`, -100..+30); None scales to the data.
    """
    if values not in ("ln", "db"):
        raise UserError(f"values={values!r}: use 'ln' (natural-log magnitudes) or 'db'")
    m = _to_numpy(mel, "mel")
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise UserError(f"mel has shape {m.shape}; pass [frames, n_mels] or [1, frames, n_mels]")
    if not np.all(np.isfinite(m)):
        raise UserError("mel holds NaN or infinite values; check the audio and the front end")
    if hop_length <= 0 or sample_rate <= 0:
        raise UserError(f"hop_length and sample_rate must be positive, got {hop_length} and {sample_rate}")
    frames, n_mels = m.shape
    duration = frames * hop_length / sample_rate
    spans = _check_events(events, duration)
    db = m * _LN_TO_DB if values == "ln" else m
    vmin, vmax = db_range if db_range is not None else (None, None)

    fig = Figure(figsize=(max(6.0, min(16.0, 2.0 + duration)), 3.6), layout="constrained")
    ax = fig.add_subplot()
    img = ax.imshow(
        db.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
        extent=(0.0, duration, 0, n_mels), vmin=vmin, vmax=vmax,
    )
    fig.colorbar(img, ax=ax, pad=0.01).set_label("mel magnitude (dB)")
    colours: dict[str, str] = {}
    for label, on, off in spans:
        c = colours.setdefault(label, _EVENT_COLOURS[len(colours) % len(_EVENT_COLOURS)])
        ax.axvspan(on, off, color=c, alpha=0.18, lw=0)
        ax.axvline(on, color=c, lw=1.2)
        ax.axvline(off, color=c, lw=1.2, ls="--")
        ax.text(on, n_mels * 0.97, f" {label}", color="white", va="top", ha="left", fontsize=8,
                bbox=dict(facecolor=c, alpha=0.7, lw=0, pad=1.5))
    ax.set_xlim(0.0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title)
    return fig


def plot_spectrogram(
    mel: Any,
    hop_length: int,
    sample_rate: int,
    title: str = "",
    events: Sequence[Mapping[str, Any]] | None = None,
    path: str | os.PathLike | None = None,
    values: str = "ln",
    db_range: tuple[float, float] | None = SPEC_DB_RANGE,
) -> Path:
    """Write :func:`spectrogram_figure` as a PNG at ``path`` (atomically); returns the path."""
    if path is None:
        raise UserError("plot_spectrogram needs path= (a .png file to write)")
    return save_figure(spectrogram_figure(mel, hop_length, sample_rate, title, events, values, db_range), path)


def bars_figure(
    labels: Sequence[str],
    values: Sequence[float],
    errors: Sequence[float] | Sequence[Sequence[float]] | None = None,
    title: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Bars with error bars, e.g. MOS per system with 95% intervals.

    Args:
        labels: ``[N]`` bar names.
        values: ``[N]`` bar heights.
        errors: ``[N]`` symmetric half-widths, or ``[N, 2]`` ``(low, high)`` interval ends (absolute values, as a
            bootstrap CI is reported), or None.
        ylim: y-axis range, e.g. ``(1, 5)`` for MOS.
    """
    v = _to_numpy(values, "values")
    if v.ndim != 1 or len(v) == 0 or len(labels) != len(v):
        raise UserError(f"plot_bars needs one value per label: got {len(labels)} labels and values of shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise UserError("plot_bars values hold NaN or infinite entries; report missing scores instead of plotting")
    yerr = None
    if errors is not None:
        e = _to_numpy(errors, "errors")
        if e.shape == v.shape:
            yerr = np.abs(e)
        elif e.shape == (len(v), 2):
            if np.any(e[:, 0] > v + 1e-9) or np.any(e[:, 1] < v - 1e-9):
                raise UserError("plot_bars intervals must contain their values (pass (low, high) per bar)")
            yerr = np.stack([v - e[:, 0], e[:, 1] - v])  # matplotlib wants distances below / above
        else:
            raise UserError(f"plot_bars errors have shape {e.shape}; pass [N] half-widths or [N, 2] (low, high)")
        if not np.all(np.isfinite(yerr)):
            raise UserError("plot_bars errors hold NaN or infinite entries")
    # Long names wrap onto a second line and widen their bars, so neighbouring tick labels never run together.
    names = [textwrap.fill(str(s), 14, break_long_words=False) for s in labels]
    widest = max(len(line) for s in names for line in s.splitlines())
    fig = Figure(figsize=(max(4.0, 1.0 + max(0.9, 0.09 * widest) * len(v)), 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(v))
    ax.bar(x, v, color="tab:blue", alpha=0.85)
    if yerr is not None:
        spread = np.atleast_2d(yerr).reshape(-1, len(v)).sum(axis=0) > 0  # no zero-width error bars
        if np.any(spread):
            e = np.atleast_2d(yerr).reshape(-1, len(v))[:, spread]
            ax.errorbar(x[spread], v[spread], yerr=e if e.shape[0] == 2 else e[0], fmt="none", capsize=4,
                        ecolor="black")
    ax.set_xticks(x, names)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def plot_bars(
    labels: Sequence[str],
    values: Sequence[float],
    errors: Sequence[float] | Sequence[Sequence[float]] | None = None,
    title: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
    path: str | os.PathLike | None = None,
) -> Path:
    """Write :func:`bars_figure` as a PNG at ``path`` (atomically); returns the path."""
    if path is None:
        raise UserError("plot_bars needs path= (a .png file to write)")
    return save_figure(bars_figure(labels, values, errors, title, ylabel, ylim), path)


def histogram_figure(
    series: Mapping[str, Sequence[float]],
    bins: int = 30,
    title: str = "",
    xlabel: str = "",
) -> Figure:
    """Overlaid histograms on shared bins, e.g. similarities to positive vs negative captions.

    Args:
        series: name -> ``[N_i]`` values (two in the usual case; one or more allowed).
        bins: number of shared bins over the pooled range.
    """
    if not isinstance(series, Mapping) or len(series) == 0:
        raise UserError("plot_histogram needs a dict of name -> values with at least one series")
    arrays = {}
    for name, vals in series.items():
        a = _to_numpy(vals, f"series {name!r}")
        if a.ndim != 1 or a.size == 0:
            raise UserError(f"histogram series {name!r} has shape {a.shape}; pass a non-empty 1-D list of values")
        if not np.all(np.isfinite(a)):
            raise UserError(f"histogram series {name!r} holds NaN or infinite values")
        arrays[str(name)] = a
    if bins < 1:
        raise UserError(f"bins must be >= 1, got {bins}")
    pooled = np.concatenate(list(arrays.values()))
    lo, hi = float(pooled.min()), float(pooled.max())
    if lo == hi:  # all equal: give the single bar some width
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, a) in enumerate(arrays.items()):
        ax.hist(a, bins=edges, alpha=0.5, label=f"{name} (n={a.size}, mean={a.mean():.3g})",
                color=_EVENT_COLOURS[i % len(_EVENT_COLOURS)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts are whole numbers
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plot_histogram(
    series: Mapping[str, Sequence[float]],
    bins: int = 30,
    title: str = "",
    xlabel: str = "",
    path: str | os.PathLike | None = None,
) -> Path:
    """Write :func:`histogram_figure` as a PNG at ``path`` (atomically); returns the path."""
    if path is None:
        raise UserError("plot_histogram needs path= (a .png file to write)")
    return save_figure(histogram_figure(series, bins, title, xlabel), path)


__all__ = [
    "SPEC_DB_RANGE",
    "bars_figure",
    "histogram_figure",
    "plot_bars",
    "plot_histogram",
    "plot_spectrogram",
    "save_figure",
    "spectrogram_figure",
]
