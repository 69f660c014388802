"""tclap.plotting: PNGs are written atomically and hold what was asked; bad shapes give UserError."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from basekit.errors import UserError
from basekit.plotting import bars_figure, histogram_figure, plot_bars, plot_histogram, plot_spectrogram, spectrogram_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _mel(frames=200, n_mels=64, seed=0):
    return np.random.default_rng(seed).normal(-40, 10, size=(frames, n_mels)).astype(np.float32)


def test_plot_spectrogram_writes_png_with_events(tmp_path):
    events = [{"label": "a beep", "onset": 0.2, "offset": 0.7}, {"label": "a knock", "onset": 1.1, "offset": 1.6}]
    path = plot_spectrogram(_mel(), 160, 16000, "beep then knock", events, tmp_path / "out" / "spec.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 500
    assert os.listdir(path.parent) == ["spec.png"]  # no temp file left


def test_spectrogram_figure_axes_and_spans():
    # 200 frames * 160 / 16000 = 2.0 s on the time axis
    events = [{"label": "a beep", "onset": 0.25, "offset": 0.5}, {"label": "a siren", "onset": 1.0, "offset": 3.0}]
    fig = spectrogram_figure(torch.from_numpy(_mel())[None], 160, 16000, "t", events)
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((0.0, 2.0))
    assert ax.images[0].get_array().shape == (64, 200)  # mel bins on y, frames on x
    labels = sorted(t.get_text().strip() for t in ax.texts)
    assert labels == ["a beep", "a siren"]
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches)
    # the offset past the end (3.0 s) is clipped to the spectrogram's duration
    assert spans == [pytest.approx((0.25, 0.5)), pytest.approx((1.0, 2.0))]


@pytest.mark.parametrize(
    "mel,match",
    [
        (np.zeros(10), "shape"),
        (np.zeros((2, 10, 8)), "shape"),
        (np.zeros((0, 8)), "shape"),
        (np.full((10, 8), np.nan), "NaN"),
        ("abc", "numeric"),
    ],
)
def test_plot_spectrogram_bad_shapes(tmp_path, mel, match):
    with pytest.raises(UserError, match=match):
        plot_spectrogram(mel, 160, 16000, "x", None, tmp_path / "bad.png")
    assert not list(tmp_path.iterdir())


def test_plot_spectrogram_bad_events_and_paths(tmp_path):
    m = _mel(100)
    with pytest.raises(UserError, match="onset"):
        plot_spectrogram(m, 160, 16000, events=[{"label": "x", "onset": 0.5}], path=tmp_path / "a.png")
    with pytest.raises(UserError, match="onset"):
        plot_spectrogram(m, 160, 16000, events=[{"label": "x", "onset": 0.5, "offset": 0.2}], path=tmp_path / "a.png")
    with pytest.raises(UserError, match="after the spectrogram ends"):
        plot_spectrogram(m, 160, 16000, events=[{"label": "x", "onset": 5, "offset": 6}], path=tmp_path / "a.png")
    with pytest.raises(UserError, match="positive"):
        plot_spectrogram(m, 0, 16000, path=tmp_path / "a.png")
    with pytest.raises(UserError, match=".png"):
        plot_spectrogram(m, 160, 16000, path=tmp_path / "a.jpg")
    with pytest.raises(UserError, match="path="):
        plot_spectrogram(m, 160, 16000)


def test_plot_bars_with_symmetric_and_interval_errors(tmp_path):
    p = plot_bars(["baseline", "t-clap"], [3.1, 3.8], [0.2, 0.15], "MOS", "score", (1, 5), path=tmp_path / "bars.png")
    assert p.read_bytes().startswith(PNG_MAGIC) and p.stat().st_size > 3000
    fig = bars_figure(["a", "b", "c"], [2.0, 3.0, 4.0], [(1.5, 2.5), (2.0, 3.5), (3.9, 4.4)])
    ax = fig.axes[0]
    assert [r.get_height() for r in ax.patches] == pytest.approx([2.0, 3.0, 4.0])
    err = next(c for c in ax.containers if type(c).__name__ == "ErrorbarContainer")
    segs = err.lines[2][0].get_segments()  # one vertical segment per bar
    ends = sorted((float(s[:, 1].min()), float(s[:, 1].max())) for s in segs)
    assert ends == [pytest.approx((1.5, 2.5)), pytest.approx((2.0, 3.5)), pytest.approx((3.9, 4.4))]


def test_long_bar_labels_wrap_and_do_not_overlap():
    labels = ["AudioLDM_L", "AudioLDM_T", "real clips (ceiling)", "baseline CLAP T2A blind"]
    fig = bars_figure(labels, [14.0, 24.0, 93.0, 46.5])
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["AudioLDM_L", "AudioLDM_T", "real clips\n(ceiling)", "baseline CLAP\nT2A blind"]
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 < right.x0, "neighbouring tick labels overlap"


@pytest.mark.parametrize(
    "labels,values,errors,match",
    [
        (["a", "b"], [1.0], None, "one value per label"),
        ([], [], None, "one value per label"),
        (["a"], [float("nan")], None, "NaN"),
        (["a", "b"], [1.0, 2.0], [0.1, 0.2, 0.3], "shape"),
        (["a"], [1.0], [(1.5, 2.0)], "contain"),
    ],
)
def test_plot_bars_bad_input(tmp_path, labels, values, errors, match):
    with pytest.raises(UserError, match=match):
        plot_bars(labels, values, errors, path=tmp_path / "b.png")


def test_plot_histogram_two_overlaid(tmp_path):
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.4, 0.1, 300), rng.normal(0.2, 0.1, 200)
    p = plot_histogram({"positive": pos, "negative": neg}, bins=20, title="sims", xlabel="cosine",
                       path=tmp_path / "h.png")
    assert p.read_bytes().startswith(PNG_MAGIC) and p.stat().st_size > 3000
    ax = histogram_figure({"positive": pos, "negative": neg}, bins=20).axes[0]
    heights = np.array([r.get_height() for r in ax.patches]).reshape(2, 20)
    edges = np.linspace(min(pos.min(), neg.min()), max(pos.max(), neg.max()), 21)
    np.testing.assert_array_equal(heights[0], np.histogram(pos, edges)[0])
    np.testing.assert_array_equal(heights[1], np.histogram(neg, edges)[0])
    # constant data still plots (one bar of width 1)
    ax = histogram_figure({"x": [1.0, 1.0, 1.0]}, bins=1).axes[0]
    assert ax.patches[0].get_height() == 3


@pytest.mark.parametrize(
    "series,match", [({}, "at least one"), ({"a": []}, "non-empty"), ({"a": [[1, 2]]}, "1-D"), ({"a": [np.inf]}, "NaN")]
)
def test_plot_histogram_bad_input(tmp_path, series, match):
    with pytest.raises(UserError, match=match):
        plot_histogram(series, path=tmp_path / "h.png")


def test_plotting_never_touches_pyplot():
    code = "import sys, basekit.plotting; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- issue 21: units, fixed ranges, honest bars
def test_spectrogram_in_db_on_a_fixed_range_with_a_labelled_colorbar():
    quiet = np.full((50, 64), np.log(1e-5))  # AudioLDM's floor, natural log: -100 dB
    quiet[10:20, 5:9] = np.log(1e-4)  # -80 dB: near-silence must stay dark, not fill the colour map
    fig = spectrogram_figure(quiet, 160, 16000)
    ax, cax = fig.axes
    img = ax.get_images()[0]
    assert img.get_clim() == (-100.0, 30.0)
    assert float(img.get_array().min()) == pytest.approx(-100.0) and float(img.get_array().max()) == pytest.approx(-80.0)
    assert cax.get_ylabel() == "mel magnitude (dB)"
    ramp = np.linspace(-40.0, -10.0, 80).reshape(10, 8)
    img = spectrogram_figure(ramp, 160, 16000, values="db", db_range=None).axes[0].get_images()[0]
    assert img.get_clim() == (-40.0, -10.0)  # already dB, scaled to the data on request
    with pytest.raises(UserError, match="values="):
        spectrogram_figure(quiet, 160, 16000, values="power")


def test_bars_draw_no_zero_width_error_bars():
    fig = bars_figure(["a", "b", "c"], [50.0, 60.0, 93.0], [4.0, 0.0, 0.0])
    err = [c for c in fig.axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(err) == 1 and len(err[0].lines[2][0].get_segments()) == 1  # only the bar with a spread
    fig = bars_figure(["a", "b"], [1.0, 2.0], [0.0, 0.0])
    assert not [c for c in fig.axes[0].containers if type(c).__name__ == "ErrorbarContainer"]


def test_histogram_count_ticks_are_integers():
    ax = histogram_figure({"a": [0.1, 0.2, 0.2, 0.3]}, bins=3).axes[0]
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
