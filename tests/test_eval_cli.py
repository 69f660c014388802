"""eval-gen CLI end to end on tiny folders (mel-stats backend), compare, and one-line errors for bad input."""

import json

import numpy as np
import pytest

from eval_gen.cli import main
from basekit.audio import save_audio


def _folder(path, n, seed, sr=16000, seconds=1.0, names=None, scale=0.1):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = names[i] if names else f"clip{i:02d}"
        t = np.arange(int(sr * seconds)) / sr
        wav = scale * rng.standard_normal(len(t)) + 0.2 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
        save_audio(path / f"{name}.wav", wav.astype(np.float32), sr)
    return path


def _run(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_score_writes_json_md_png_and_compare(tmp_path, capsys):
    gen = _folder(tmp_path / "gen", 10, 0)
    ref = _folder(tmp_path / "ref", 10, 1, sr=22050)
    common = ["--metrics", "fad,kad,fad_inf", "--n-boot", "5", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    rc, out, err = _run(["score", "--gen", str(gen), "--ref", str(ref), "--out", str(tmp_path / "a")] + common, capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "a" / "scores.json").read_text())
    assert res["n_gen"] == 10 and res["backend"]["name"] == "mel-stats"
    assert res["metrics"]["fad"]["value"] > 0 and res["metrics"]["fad"]["ci"]["n_boot"] == 5
    assert "FAD" in (tmp_path / "a" / "scores.md").read_text() and (tmp_path / "a" / "scores.png").stat().st_size > 0
    assert "| FAD ↓ |" in out
    # second run: every embedding comes from the cache and the numbers are identical
    rc, _, _ = _run(["score", "--gen", str(gen), "--ref", str(ref), "--out", str(tmp_path / "b")] + common, capsys)
    res_b = json.loads((tmp_path / "b" / "scores.json").read_text())
    assert res_b["metrics"]["fad"] == res["metrics"]["fad"]
    # the same set against itself: FAD ~ 0
    rc, _, _ = _run(["score", "--gen", str(ref), "--ref", str(ref), "--out", str(tmp_path / "c")] + common, capsys)
    res_c = json.loads((tmp_path / "c" / "scores.json").read_text())
    assert abs(res_c["metrics"]["fad"]["value"]) < 1e-6
    rc, out, _ = _run(["compare", str(tmp_path / "a" / "scores.json"), str(tmp_path / "c"), "--names", "sys,self"],
                      capsys)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "| metric | sys | self |" and any(line.startswith("| FAD ↓ |") for line in lines)


def test_edited_clip_is_not_served_from_a_stale_cache(tmp_path, capsys):
    gen = _folder(tmp_path / "gen", 6, 0)
    ref = _folder(tmp_path / "ref", 6, 1)
    args = ["score", "--gen", str(gen), "--ref", str(ref), "--metrics", "fad", "--n-boot", "0", "--quiet",
            "--cache-dir", str(tmp_path / "cache"), "--no-plot"]
    main(args + ["--out", str(tmp_path / "a")])
    _folder(tmp_path / "gen", 1, 99, scale=0.5)  # overwrite clip00 with different audio, same name
    main(args + ["--out", str(tmp_path / "b")])
    capsys.readouterr()
    a = json.loads((tmp_path / "a" / "scores.json").read_text())["metrics"]["fad"]["value"]
    b = json.loads((tmp_path / "b" / "scores.json").read_text())["metrics"]["fad"]["value"]
    assert a != b


@pytest.mark.parametrize("case", ["empty", "unreadable", "missing", "silent", "kl_names", "weights", "metric",
                                  "prompts"])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, case):
    gen = _folder(tmp_path / "gen", 4, 0)
    ref = _folder(tmp_path / "ref", 4, 1)
    extra = ["--metrics", "fad", "--n-boot", "0", "--quiet", "--no-plot", "--cache-dir", ""]
    expect = {"empty": "holds no audio files", "unreadable": "cannot decode", "missing": "folder not found",
              "silent": "are silent", "kl_names": "paired by file name", "weights": "is not a VGGish",
              "metric": "unknown metric", "prompts": "need prompts"}[case]
    if case == "empty":
        (tmp_path / "empty").mkdir()
        gen = tmp_path / "empty"
    elif case == "unreadable":
        (gen / "broken.wav").write_bytes(b"RIFF not really a wav")
    elif case == "missing":
        gen = tmp_path / "nope"
    elif case == "silent":
        save_audio(gen / "quiet.wav", np.zeros(16000, np.float32), 16000)
        extra += ["--on-silent", "error"]
    elif case == "kl_names":
        ref = _folder(tmp_path / "ref2", 4, 1, names=["a", "b", "c", "d"])
        extra += ["--metrics", "kl", "--backend", "panns-cnn14"]
    elif case == "weights":
        import torch

        torch.save({"model": {"fc1.weight": torch.zeros(1)}}, tmp_path / "w.pth")
        extra += ["--backend", "vggish", "--weights", str(tmp_path / "w.pth")]
    elif case == "metric":
        extra += ["--metrics", "fad,fid"]
    elif case == "prompts":
        extra += ["--metrics", "clap"]
    rc, out, err = _run(["score", "--gen", str(gen), "--ref", str(ref), "--out", str(tmp_path / "o")] + extra, capsys)
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if ": error: " in ln]
    assert len(lines) == 1 and expect in lines[0], err
    assert "Traceback" not in err


def test_silent_clips_are_counted_and_reported_by_default(tmp_path, capsys):
    gen = _folder(tmp_path / "gen", 5, 0)
    ref = _folder(tmp_path / "ref", 5, 1)
    save_audio(gen / "quiet.wav", np.zeros(16000, np.float32), 16000)
    rc, _, err = _run(["score", "--gen", str(gen), "--ref", str(ref), "--metrics", "fad", "--n-boot", "0", "--quiet",
                       "--no-plot", "--cache-dir", "", "--out", str(tmp_path / "o")], capsys)
    assert rc == 0 and "1 of 6 generated clips are silent" in err
    res = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert res["silent"]["gen"] == ["quiet"] and res["n_gen"] == 6
    rc, _, err = _run(["score", "--gen", str(gen), "--ref", str(ref), "--metrics", "fad", "--n-boot", "0", "--quiet",
                       "--no-plot", "--cache-dir", "", "--on-silent", "skip", "--out", str(tmp_path / "p")], capsys)
    res = json.loads((tmp_path / "p" / "scores.json").read_text())
    assert res["n_gen"] == 5 and res["silent"]["gen"] == ["quiet"]


def test_near_silence_is_judged_in_dbfs_before_any_gain_for_generated_and_reference(tmp_path, capsys):
    gen = _folder(tmp_path / "gen", 4, 0)
    ref = _folder(tmp_path / "ref", 4, 1)
    hiss = (np.random.default_rng(2).uniform(-1, 1, 16000) * 1.8e-4).astype(np.float32)  # peak ~ -75 dBFS
    save_audio(gen / "hiss.wav", hiss, 16000)
    save_audio(ref / "hiss_ref.wav", hiss, 16000)
    # a clip the generator normalised up from -75 dBFS: loud on disk, near-silent as the model made it
    save_audio(gen / "boosted.wav", (hiss / np.abs(hiss).max() * 0.89).astype(np.float32), 16000)
    (gen / "prompts.jsonl").write_text(
        json.dumps({"id": "boosted", "prompt": "a beep", "audio": "boosted.wav",
                    "level": {"peak_dbfs_before": -75.3, "gain_db": 74.3}}) + "\n"
        + json.dumps({"id": "clip00", "prompt": "a knock", "audio": "clip00.wav",
                      "level": {"peak_dbfs_before": -3.0, "gain_db": 0.0}}) + "\n")
    rc, out, err = _run(["score", "--gen", str(gen), "--ref", str(ref), "--metrics", "fad", "--n-boot", "0",
                         "--quiet", "--no-plot", "--cache-dir", "", "--out", str(tmp_path / "o")], capsys)
    assert rc == 0
    res = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert sorted(res["silent"]["gen"]) == ["boosted", "hiss"] and res["silent"]["ref"] == ["hiss_ref"]
    import soundfile as sf

    hiss_db = 20 * np.log10(np.abs(sf.read(gen / "hiss.wav")[0]).max())  # independent: the file's own peak
    assert res["silence"]["peaks_dbfs"]["gen"]["hiss"] == pytest.approx(hiss_db, abs=0.01)
    assert res["silence"]["peaks_dbfs"]["gen"]["boosted"] == -75.3 and res["silence"]["threshold_dbfs"] == -60.0
    assert "2 of 6 generated clips are silent or near-silent (peak below -60 dBFS before any gain)" in err
    assert "1 of 5 reference clips are silent or near-silent" in err
    assert "silent or near-silent clips (peak below -60 dBFS before any gain): 2 of 6 generated, 1 of 5 reference" in out
    # a lower threshold lets -75 dBFS pass
    rc, _, err = _run(["score", "--gen", str(gen), "--ref", str(ref), "--metrics", "fad", "--n-boot", "0", "--quiet",
                       "--no-plot", "--cache-dir", "", "--silence-dbfs", "-90", "--out", str(tmp_path / "p")], capsys)
    assert rc == 0 and json.loads((tmp_path / "p" / "scores.json").read_text())["silent"] == {"gen": [], "ref": []}


def test_compare_refuses_a_non_scores_file(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    rc, _, err = _run(["compare", str(tmp_path / "x.json")], capsys)
    assert rc == 2 and "not an eval-gen scores file" in err


def test_score_arrays_in_memory_matches_independent_fad():
    from eval_gen.backends import get_backend
    from eval_gen.metrics import frechet_distance_from_stats
    from eval_gen.score import score_arrays

    rng = np.random.default_rng(5)
    gen = [(0.1 * rng.standard_normal(16000)).astype(np.float32) for _ in range(8)]
    ref = [(0.3 * rng.standard_normal(16000)).astype(np.float32) for _ in range(8)]
    res = score_arrays(gen, ref, 16000, backend="mel-stats", metrics=("fad",), n_boot=0)
    b = get_backend("mel-stats")
    x = np.concatenate(b.embed(gen, 16000)).astype(np.float64)
    y = np.concatenate(b.embed(ref, 16000)).astype(np.float64)
    expected = frechet_distance_from_stats(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert res["metrics"]["fad"]["value"] == pytest.approx(expected, rel=1e-9)


def test_scores_png_has_one_axis_per_metric_with_its_direction(tmp_path):
    """FAD, KAD, CLAP score and order accuracy have different scales: one panel each, ↑/↓ in the title, a CI bar
    only where the interval has a width (issue 21)."""
    from matplotlib.figure import Figure

    import basekit.plotting as plotting
    from eval_gen.report import bar_chart

    result = {"metrics": {
        "fad": {"value": 2.35, "ci": {"low": 2.0, "high": 2.9}},
        "kad": {"value": 0.5, "ci": {"low": 0.5, "high": 0.5}},  # zero-width: no error bar
        "clap_score": {"value": 0.81, "ci": None},
        "order_detector": {"value": 0.25, "n": 4, "correct": 1}}}
    seen = {}
    real = plotting.save_figure

    def keep(fig: Figure, path):
        seen["fig"] = fig
        return real(fig, path)

    plotting.save_figure = keep
    try:
        p = bar_chart(result, tmp_path / "scores.png")
    finally:
        plotting.save_figure = real
    assert p.read_bytes()[:4] == b"\x89PNG"
    axes = seen["fig"].axes
    assert [a.get_title() for a in axes] == ["FAD ↓", "KAD ↓", "CLAP score ↑", "Order acc. (detector) ↑"]
    bars = [[c for c in a.containers if type(c).__name__ == "ErrorbarContainer"] for a in axes]
    assert [len(b) for b in bars] == [1, 0, 0, 0]
    assert axes[3].get_ylim() == (0.0, 1.0)
