"""CLAP score, temporal-order accuracy, the built-in event detector and its ceiling on held-out mix-ups."""

import json

import numpy as np
import pytest

from eval_gen.detector import get_detector, order_matches
from eval_gen.temporal import order_accuracy_clap, reverse_prompt
from basekit.audio import save_audio

synth = pytest.importorskip("tclap.synth")


@pytest.fixture(scope="module")
def det_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("detector-cache"))


@pytest.fixture(scope="module")
def detector(det_cache):
    return get_detector(cache_dir=det_cache)


def test_reverse_prompt_keeps_the_template():
    assert reverse_prompt("a beep followed by a knock") == "a knock followed by a beep"
    assert reverse_prompt("A knock after a beep") == "A beep after a knock"  # meaning flips, connector stays
    assert reverse_prompt("first a siren, then a ringing bell") == "first a ringing bell, then a siren"
    assert reverse_prompt("a beep while a knock") is None  # simultaneous: no order
    assert reverse_prompt("a beep") is None


def test_order_matches_by_first_onsets():
    assert order_matches(["beep", "knock"], ["beep", "knock"])
    assert not order_matches(["knock", "beep"], ["beep", "knock"])
    assert order_matches(["hum", "beep", "hum", "knock"], ["beep", "knock"])  # extra labels ignored
    assert not order_matches(["beep"], ["beep", "knock"])  # a missing event is wrong


def test_order_accuracy_clap_hand_case_ties_are_wrong():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    pos = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    neg = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # clip 0 right, clip 1 wrong, clip 2 a tie
    r = order_accuracy_clap(a, pos, neg)
    assert r["correct"] == 1 and r["n"] == 3 and r["accuracy"] == pytest.approx(1 / 3)


def _sequence(labels, instances, gap_s=0.3, sr=16000, seconds=5.0):
    x = np.zeros(int(sr * seconds), np.float32)
    t = int(0.2 * sr)
    for lab, inst in zip(labels, instances):
        ev = synth.render_event(lab, inst, sr)
        x[t : t + len(ev)] += ev[: len(x) - t]
        t += len(ev) + int(gap_s * sr)
    return x


def test_detector_is_deterministic_and_finds_held_out_sequences(detector, det_cache):
    rng = np.random.default_rng(0)
    classes = synth.EVENT_CLASSES
    ok = 0
    n = 26
    for k in range(n):
        a, b = rng.choice(len(classes), 2, replace=False)
        labels = [classes[a], classes[b]]
        x = _sequence(labels, [synth.instance_for_split(k, "heldout"), synth.instance_for_split(k + 1, "heldout")])
        ok += order_matches(detector.detect_order(x, 16000), labels)
    assert ok >= n - 1  # the detector's ceiling on held-out mix-ups is >= 98% (tests/test_eval_detector.py)
    x = _sequence(["beep", "knock"], [4, 9])
    assert detector.detect_order(x, 16000) == get_detector(cache_dir=det_cache).detect_order(x, 16000)
    assert detector.detect_order(np.zeros(16000, np.float32), 16000) == []  # silence: no events


def test_detector_ceiling_on_real_held_out_mixups(tmp_path, det_cache):
    pytest.importorskip("tclap.data.mixup")
    from eval_gen.temporal import detector_ceiling

    r = detector_ceiling(str(tmp_path / "mix"), n=30, seconds=5.0, seed=0, cache_dir=det_cache)
    assert r["n"] == 30 and r["skipped"] == {}, r  # no overlapping mixes are built: every clip has an order
    two = r["events_per_clip"].get(2, 0)
    assert two > 0 and r["order_accuracy"] >= 29 / 30, r


def test_kl_of_identical_folders_is_zero_and_detector_order_in_cli(tmp_path, capsys, det_cache):
    from eval_gen.cli import main

    gen, ref = tmp_path / "gen", tmp_path / "ref"
    prompts = []
    for i, (a, b) in enumerate([("beep", "knock"), ("siren", "hum"), ("bell", "buzzer")]):
        x = _sequence([a, b], [4, 9])
        save_audio(gen / f"c{i}.wav", x, 16000)
        save_audio(ref / f"c{i}.wav", x, 16000)
        prompts.append({"id": f"c{i}", "prompt": f"{synth.EVENT_PHRASES[a]} followed by {synth.EVENT_PHRASES[b]}"})
    rc = main(["score", "--gen", str(gen), "--ref", str(ref), "--metrics", "kl", "--classifier", "builtin-events",
               "--cache-dir", det_cache, "--quiet", "--no-plot", "--out", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert abs(res["metrics"]["kl_softmax"]["value"]) < 1e-4 and res["metrics"]["kl_softmax"]["n_pairs"] == 3
    from eval_gen.score import score_folders

    pfile = tmp_path / "prompts.jsonl"
    pfile.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    name = _clap_name()
    res = score_folders(gen, ref, prompts=pfile, metrics=("clap", "order"), cache_dir=det_cache, progress=False,
                        clap_model=name)
    m = res["metrics"]
    assert m["order_detector"]["n"] == 3 and m["order_detector"]["value"] == 1.0
    # per-clip outcomes by clip name, so that two systems' clips of the same prompt and seed can be paired
    assert m["order_detector"]["per_clip"] == {"c0": True, "c1": True, "c2": True}
    assert m["order_clap"]["n"] == 3 and 0.0 <= m["order_clap"]["value"] <= 1.0
    assert -1.0 <= m["clap_score"]["value"] <= 1.0


def _clap_name():
    """The shipped tiny-tclap when it is built, else the random-init ``tiny`` model (same code path)."""
    tclap_models = pytest.importorskip("tclap.models")
    for name in ("tiny-tclap", "tiny"):
        try:
            tclap_models.load_clap(name)
            return name
        except Exception:
            continue
    pytest.skip("no tiny CLAP model loadable")


def test_clap_backend_embeds_through_tclap_models():
    tclap_models = pytest.importorskip("tclap.models")
    from eval_gen.backends import get_backend

    name = _clap_name()
    b = get_backend("clap", model=name)
    x = _sequence(["beep", "knock"], [4, 9], sr=b.sample_rate)
    e = b.embed([x, x], b.sample_rate)
    assert e[0].shape == (1, b.dim) and np.allclose(np.linalg.norm(e[0], axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(e[0], e[1], atol=1e-6)
    out = tclap_models.load_clap(name).embed_audio([x])
    ref = out.detach().float().numpy() if hasattr(out, "detach") else np.asarray(out)
    np.testing.assert_allclose(e[0], ref, atol=1e-5)
    t = b.embed_text(["a beep followed by a knock"])
    assert t.shape == (1, b.dim)
