"""The event detector: the shipped built-in detector is what its recipe makes, its ceiling on held-out mix-ups,
the direction feature, training on a folder-per-class bank, save/load and the CLI's bad-input lines."""

import json

import numpy as np
import pytest

from basekit.audio import save_audio
from basekit.errors import UserError
from eval_gen.detector import (
    SHIPPED_DIR,
    DetectorConfig,
    EventDetector,
    bank_fingerprint,
    frame_features,
    get_detector,
    order_matches,
    train_detector,
    vocoder_roundtrip,
)

synth = pytest.importorskip("tclap.synth")
SR = 16000


def _sequence(labels, instances, gap_s=0.3, seconds=4.0, sr=SR):
    x = np.zeros(int(sr * seconds), np.float32)
    t = int(0.2 * sr)
    for lab, inst in zip(labels, instances):
        ev = synth.render_event(lab, inst, sr)
        x[t : t + len(ev)] += ev[: len(x) - t]
        t += len(ev) + int(gap_s * sr)
    return x


@pytest.fixture(scope="module")
def shipped():
    return get_detector()


def test_shipped_detector_matches_the_code(shipped):
    # Used only when it was made with today's settings from today's bank (else it would be retrained).
    assert (SHIPPED_DIR / "detector.json").is_file()
    assert shipped.cfg == DetectorConfig()
    assert shipped.record["bank"]["fingerprint"] == bank_fingerprint("builtin")
    assert shipped.record["made_by"]["command"] == "eval-gen detector train --bank builtin --out eval_gen/assets/detector-builtin"
    assert list(shipped.labels[1:]) == list(synth.EVENT_CLASSES)
    assert shipped.vocabulary() == dict(synth.EVENT_PHRASES)


def test_the_recipe_remakes_the_shipped_detector(shipped):
    """Retrain with the recorded command's settings: the same decisions on held-out sequences."""
    fresh = train_detector("builtin", DetectorConfig())
    rng = np.random.default_rng(5)
    for k in range(8):
        a, b = rng.choice(len(synth.EVENT_CLASSES), 2, replace=False)
        labels = [synth.EVENT_CLASSES[a], synth.EVENT_CLASSES[b]]
        x = _sequence(labels, [synth.instance_for_split(k, "heldout"), synth.instance_for_split(k + 3, "heldout")])
        np.testing.assert_allclose(fresh.frame_posteriors(x, SR), shipped.frame_posteriors(x, SR), atol=1e-3)
        assert fresh.detect_order(x, SR) == shipped.detect_order(x, SR)


def test_ceiling_on_held_out_mixups(tmp_path, shipped):
    pytest.importorskip("tclap.data.mixup")
    from eval_gen.stats import wilson_interval
    from eval_gen.temporal import detector_ceiling

    r = detector_ceiling(str(tmp_path / "mix"), n=60, seconds=5.0, seed=11, detector=shipped, max_events=3)
    assert r["n"] == 60 and set(r["events_per_clip"]) == {2, 3}, r
    assert r["order_accuracy"] >= 59 / 60, r["failures"]
    assert r["wilson"] == pytest.approx(list(wilson_interval(r["correct"], r["n"])))


def test_rising_and_falling_sweeps_are_told_apart(shipped):
    # The centred context statistics are symmetric in time; the before-minus-after block is what separates these.
    ok = 0
    for k in range(6):
        i, j = synth.instance_for_split(k, "heldout"), synth.instance_for_split(k + 6, "heldout")
        for labels in (["rising_chirp", "falling_whistle"], ["falling_whistle", "rising_chirp"]):
            ok += shipped.detect_order(_sequence(labels, [i, j]), SR) == labels  # exactly these two events
    assert ok == 12


def test_direction_block_is_before_minus_after():
    cfg = DetectorConfig(n_mels=8, context=2)
    x = np.random.default_rng(0).standard_normal(SR // 2)
    f = frame_features(x, cfg)
    from eval_gen.backends.mel import log_mel_frames

    lm = log_mel_frames(x, SR, n_fft=512, hop=160, n_mels=8)
    t = 10
    np.testing.assert_allclose(f[t, :8], lm[t], rtol=1e-5)
    np.testing.assert_allclose(f[t, 8:16], lm[t - 2 : t + 3].mean(0), rtol=1e-5)
    np.testing.assert_allclose(f[t, 16:24], lm[t - 2 : t + 3].std(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f[t, 24:], lm[t - 2 : t].mean(0) - lm[t + 1 : t + 3].mean(0), rtol=1e-4, atol=1e-5)


def test_vocoder_roundtrip_keeps_length_level_and_is_deterministic():
    x = _sequence(["beep", "knock"], [4, 9], seconds=2.0).astype(np.float64)
    y = vocoder_roundtrip(x)
    assert y.shape == x.shape and np.array_equal(y, vocoder_roundtrip(x))
    rms = lambda v: float(np.sqrt(np.mean(v**2)))  # noqa: E731
    assert 0.3 < rms(y) / rms(x) < 3.0


def test_outcomes_are_kept_per_clip(shipped):
    from eval_gen.temporal import order_accuracy_detector

    good = _sequence(["beep", "knock"], [4, 9])
    prompts = ["a beep followed by a knock", "a knock followed by a beep", "a beep", "a beep followed by a knock"]
    r = order_accuracy_detector([good, good, good, np.zeros(SR, np.float32)], SR, prompts, detector=shipped)
    assert r["outcomes"] == [True, False, None, False]
    assert (r["n"], r["correct"]) == (3, 1) and sum(r["skipped"].values()) == 1


# ------------------------------------------------------------------------------------------------ other banks
def _folder_bank(root, classes=("beep", "hum", "siren"), per_class=10):
    """A folder-per-class bank written from built-in renders, under other label names."""
    names = {c: f"my_{c}" for c in classes}
    for c in classes:
        for j in range(per_class):
            save_audio(root / names[c] / f"{c}{j:02d}.wav", synth.render_event(c, j, SR), SR)
    return names


SMALL = ["--set", "steps=200", "--set", "instances_per_class=6", "--set", "vocoder_augment=false"]


def test_train_on_a_folder_bank_save_load_and_ceiling(tmp_path, capsys):
    from eval_gen.cli import main

    names = _folder_bank(tmp_path / "bank")
    out = tmp_path / "det"
    assert main(["detector", "train", "--bank", str(tmp_path / "bank"), "--out", str(out), *SMALL]) == 0
    rec = json.loads((out / "detector.json").read_text())
    assert rec["labels"] == sorted(names.values()) and rec["config"]["steps"] == 200
    assert rec["phrases"]["my_beep"] == "a my beep"
    assert rec["made_by"]["command"].startswith("eval-gen detector train --bank")
    det = EventDetector.load(out)
    x = _sequence(["siren", "beep"], [3, 1], seconds=3.0)
    assert det.detect_order(x, SR) == ["my_siren", "my_beep"]
    # get_detector accepts a saved folder as it is.
    assert get_detector(bank=out).detect_order(x, SR) == ["my_siren", "my_beep"]
    capsys.readouterr()
    rc = main(["detector", "ceiling", "--detector", str(out), "--n", "12", "--seconds", "3", "--quiet",
               "--json", str(tmp_path / "ceil.json")])
    assert rc == 0
    res = json.loads((tmp_path / "ceil.json").read_text())
    assert res["n"] == 12 and res["settings"]["bank"] == str((tmp_path / "bank").resolve())
    assert res["order_accuracy"] >= 10 / 12, res["failures"]
    assert "detector ceiling:" in capsys.readouterr().out


def test_detector_bad_input_is_one_line(tmp_path, capsys):
    from eval_gen.cli import main

    one = tmp_path / "one"
    save_audio(one / "only" / "a.wav", synth.render_event("beep", 0, SR), SR)
    for argv, needle in (
        (["detector", "train", "--bank", str(one), "--out", str(tmp_path / "o")], "needs at least 2"),
        (["detector", "train", "--bank", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "not 'builtin' or a folder"),
        (["detector", "train", "--bank", "builtin", "--out", str(tmp_path / "o"), "--set", "colour=red"], "unknown detector setting"),
        (["detector", "train", "--bank", "builtin", "--out", str(tmp_path / "o"), "--set", "steps=many"], "not a int"),
        (["detector", "ceiling", "--detector", str(tmp_path), "--n", "4"], "not a saved event detector"),
        (["detector", "ceiling", "--n", "0"], "--n 0"),
        (["detector", "ceiling", "--n", "4", "--events", "5"], "--events"),
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, err)


def test_load_refuses_a_damaged_detector(tmp_path):
    det = train_detector("builtin", DetectorConfig(steps=2, instances_per_class=1, vocoder_augment=False))
    det.save(tmp_path / "d")
    (tmp_path / "d" / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(UserError, match="retrain"):
        EventDetector.load(tmp_path / "d")
    (tmp_path / "d" / "detector.json").write_text("{")
    with pytest.raises(UserError, match="not readable JSON"):
        EventDetector.load(tmp_path / "d")


def test_other_settings_train_once_then_load_from_the_disk_cache(tmp_path):
    import eval_gen.detector as D

    cfg = DetectorConfig(steps=3, instances_per_class=1, vocoder_augment=False)
    first = get_detector(cfg, cache_dir=tmp_path)
    entries = list(tmp_path.glob("detector-*/detector.json"))
    assert len(entries) == 1 and first.cfg == cfg  # not the shipped one: other settings
    D._get_detector.cache_clear()
    again = get_detector(cfg, cache_dir=tmp_path)  # from disk, not retrained
    assert again is not first and again.record == first.record
    x = _sequence(["beep", "knock"], [4, 9], seconds=2.0)
    np.testing.assert_array_equal(again.frame_posteriors(x, SR), first.frame_posteriors(x, SR))
    (entries[0].parent / "model.safetensors").write_bytes(b"damaged")  # a damaged entry is retrained
    D._get_detector.cache_clear()
    np.testing.assert_allclose(get_detector(cfg, cache_dir=tmp_path).frame_posteriors(x, SR),
                               first.frame_posteriors(x, SR), atol=1e-6)
