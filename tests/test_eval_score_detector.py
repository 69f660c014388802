"""``eval-gen score --detector DIR``: a detector trained by ``eval-gen detector train`` on a folder-per-class bank
judges order and is the KL classifier, instead of the built-in one; a bad folder is one line and exit 2.

The detector used is checked against that detector called directly (per-clip order verdicts, and the KL recomputed
in numpy from its clip probabilities), and against the built-in detector, which does not know the bank's events."""

import json

import numpy as np
import pytest

from basekit.audio import load_audio, save_audio
from eval_gen.cli import main
from eval_gen.detector import EventDetector, order_matches

synth = pytest.importorskip("tclap.synth")
SR = 16000
# Built-in renders filed under names that no built-in phrase contains ("a gong" is no built-in event).
CLASSES = {"beep": "gong", "hum": "whirr", "siren": "wail"}
SMALL = ["--set", "steps=200", "--set", "instances_per_class=6", "--set", "vocoder_augment=false"]


def _sequence(sources, instances, seconds=3.0):
    """Events of the built-in classes ``sources`` one after the other with 0.3 s gaps -> ``[T]``."""
    x = np.zeros(int(SR * seconds), np.float32)
    t = int(0.2 * SR)
    for src, inst in zip(sources, instances):
        ev = synth.render_event(src, inst, SR)
        x[t : t + len(ev)] += ev[: len(x) - t]
        t += len(ev) + int(0.3 * SR)
    return x


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("score_detector")
    for src, label in CLASSES.items():
        for j in range(10):
            save_audio(root / "bank" / label / f"{label}{j:02d}.wav", synth.render_event(src, j, SR), SR)
    det_dir = root / "det"
    assert main(["detector", "train", "--bank", str(root / "bank"), "--out", str(det_dir), *SMALL]) == 0
    by_label = {v: k for k, v in CLASSES.items()}
    # (clip name, events in the clip, prompt, the order the prompt states or None): instances 20+ are in no bank file.
    clips = [
        ("c0", ["gong", "wail"], "a gong followed by a wail", ["gong", "wail"]),
        ("c1", ["wail", "whirr"], "a wail followed by a whirr", ["wail", "whirr"]),
        ("c2", ["gong", "whirr"], "a whirr followed by a gong", ["whirr", "gong"]),
        ("c3", ["whirr", "wail"], "a wail followed by a whirr", ["wail", "whirr"]),
        ("c4", ["gong"], "a gong", None),
        ("c5", ["wail", "gong"], "a gong after a wail", ["wail", "gong"]),
    ]
    prompts = []
    for k, (name, events, prompt, _) in enumerate(clips):
        src = [by_label[e] for e in events]
        save_audio(root / "gen" / f"{name}.wav", _sequence(src, [20 + k, 21 + k]), SR)
        save_audio(root / "ref" / f"{name}.wav", _sequence(src, [30 + k, 31 + k]), SR)
        prompts.append({"id": name, "prompt": prompt})
    (root / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    common = ["score", "--gen", str(root / "gen"), "--ref", str(root / "ref"), "--prompts", str(root / "prompts.jsonl"),
              "--metrics", "kl,order", "--classifier", "builtin-events", "--n-boot", "0", "--cache-dir", "",
              "--no-plot", "--quiet", "--device", "cpu"]
    assert main([*common, "--detector", str(det_dir), "--out", str(root / "with")]) == 0
    assert main([*common, "--out", str(root / "builtin")]) == 0
    return {"root": root, "det": det_dir, "clips": clips,
            "with": json.loads((root / "with" / "scores.json").read_text()),
            "builtin": json.loads((root / "builtin" / "scores.json").read_text())}


def test_order_verdicts_are_the_chosen_detectors(scored):
    det = EventDetector.load(scored["det"])
    root = scored["root"]
    direct = {name: order_matches(det.detect_order(load_audio(root / "gen" / f"{name}.wav", sr=SR), SR), order)
              for name, _, _, order in scored["clips"] if order is not None}
    assert True in direct.values() and False in direct.values()  # both verdicts occur: the comparison can fail
    od = scored["with"]["metrics"]["order_detector"]
    assert od["per_clip"] == direct
    assert (od["n"], od["correct"]) == (5, sum(direct.values()))
    assert sum(od["skipped"].values()) == 1  # "a gong" states no order
    assert od["detector"]["source"] == str(scored["det"].resolve())
    assert od["detector"]["labels"] == sorted(CLASSES.values()) == list(det.labels[1:])
    assert scored["with"]["config"]["detector"] == str(scored["det"])


def test_kl_classifier_is_the_chosen_detector(scored):
    det = EventDetector.load(scored["det"])
    root = scored["root"]
    names = [c[0] for c in scored["clips"]]

    def probs(folder):
        return np.stack([det.clip_probabilities(load_audio(root / folder / f"{n}.wav", sr=SR), SR) for n in names])

    p, q = probs("ref"), probs("gen")  # [6, 3] each; KL(ref || gen) with eps 1e-6 in the generated log
    want = float(np.mean(np.sum(p * np.log(p) - p * np.log(q + 1e-6), axis=1)))
    kl = scored["with"]["metrics"]["kl_softmax"]
    assert kl["value"] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert kl["detector"]["weights"] == det.weights_digest() and kl["n_pairs"] == 6


def test_the_built_in_detector_does_not_know_these_events(scored):
    """Without --detector the same command judges with the built-in bank's 13 classes: none of the prompts parses
    over them, so nothing is scored for order, and the KL classifier is another one."""
    b = scored["builtin"]
    assert b["metrics"]["order_detector"]["n"] == 0 and b["metrics"]["order_detector"]["per_clip"] == {}
    assert sum(b["metrics"]["order_detector"]["skipped"].values()) == 6
    assert b["metrics"]["order_detector"]["detector"]["source"] == "builtin"
    assert len(b["metrics"]["kl_softmax"]["detector"]["labels"]) == len(synth.EVENT_CLASSES)
    assert "detector" not in b and b["config"]["detector"] is None


def test_bad_detector_folder_is_one_line_exit_2(scored, tmp_path, capsys):
    root = scored["root"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "detector.json").write_text("{")
    (broken / "model.safetensors").write_bytes(b"x")
    base = ["score", "--gen", str(root / "gen"), "--ref", str(root / "ref"), "--prompts", str(root / "prompts.jsonl"),
            "--metrics", "order", "--quiet", "--out", str(tmp_path / "o")]
    for folder, needle in ((tmp_path / "missing", "not found"), (root / "bank", "is not a saved event detector"),
                           (broken, "not readable JSON")):
        capsys.readouterr()
        assert main([*base, "--detector", str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].count("--detector") == 1 and str(folder) in err[0] and needle in err[0], err
        assert "eval-gen detector train" in err[0] or "retrain" in err[0]
    assert not (tmp_path / "o").exists()


def test_an_unused_detector_is_a_warning(scored, tmp_path):
    from eval_gen.score import score_folders

    root = scored["root"]
    with pytest.warns(UserWarning, match="was not used"):
        res = score_folders(root / "gen", root / "ref", metrics=("fad",), n_boot=0, cache_dir="", progress=False,
                            detector=str(scored["det"]))
    assert res["warnings"] and res["detector"]["labels"] == sorted(CLASSES.values())
