"""``eval-gen detector train`` on a union of clip banks: one detector over both banks' classes, trained on each bank's
training recordings only, its ceiling measured on the held-out recordings of both, and clashes refused in one line.

The expected classes, training files and hold-out come from what the test writes (two folder banks of numpy tones,
sweeps and noise bursts, each with its own ``heldout.txt``), not from the bank reader or the trainer under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import tclap.data.banks as banks
from eval_gen.cli import main
from eval_gen.detector import EventDetector, bank_fingerprint, get_detector
from tclap.data.manifest import read_manifest

SR = 16000
N_TRAIN, N_HELD = 3, 1  # recordings per class: the last N_HELD are listed in heldout.txt
TINY = ["--set", "steps=150", "--set", "instances_per_class=8", "--set", "vocoder_augment=false"]


def _sound(kind: str, i: int, rng: np.random.Generator) -> np.ndarray:
    """Recording ``i`` of a class: ``[T]`` float32, 0.5-0.8 s, 10 ms fades."""
    t = np.arange(int((0.5 + 0.1 * i) * SR)) / SR
    if kind == "low":
        x = np.sin(2 * np.pi * (300 + 20 * i) * t)
    elif kind == "high":
        x = np.sin(2 * np.pi * (2600 + 60 * i) * t)
    elif kind == "sweep":  # rising 500 Hz -> 4 kHz
        f0, f1 = 500.0, 4000.0
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
    else:  # "noise": white noise burst
        x = rng.standard_normal(len(t)) / 3
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    return (0.5 * x * fade + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def write_bank(root: Path, classes: dict[str, str], seed: int) -> Path:
    """``root/<label>/<label>_<i>.wav`` (N_TRAIN + N_HELD per class) and ``heldout.txt`` listing the last N_HELD."""
    rng = np.random.default_rng(seed)
    for label, kind in classes.items():
        (root / label).mkdir(parents=True)
        for i in range(N_TRAIN + N_HELD):
            sf.write(root / label / f"{label}_{i}.wav", _sound(kind, i, rng), SR)
    held = [f"{label}/{label}_{i}.wav" for label in classes for i in range(N_TRAIN, N_TRAIN + N_HELD)]
    (root / "heldout.txt").write_text("\n".join(held) + "\n")
    return root


TONES = {"low_tone": "low", "high_tone": "high"}
BURSTS = {"noise_burst": "noise", "rising_sweep": "sweep"}


@pytest.fixture(scope="module")
def two_banks(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("banks")
    return write_bank(root / "tones", TONES, 1), write_bank(root / "bursts", BURSTS, 2)


def _listed(bank: Path) -> set[str]:
    return {str((bank / ln).resolve()) for ln in (bank / "heldout.txt").read_text().splitlines() if ln}


def _all_files(bank: Path) -> set[str]:
    return {str(p.resolve()) for p in bank.glob("*/*.wav")}


@pytest.fixture(scope="module")
def trained(two_banks, tmp_path_factory):
    """The CLI run on ``--bank tones --bank bursts``, with every recording the trainer loaded."""
    tones, bursts = two_banks
    out = tmp_path_factory.mktemp("det") / "union"
    loaded: list[str] = []
    real_load = banks.ClipBank.load
    mp = pytest.MonkeyPatch()

    def spy(self, key, sr):
        loaded.append(str(Path(key).resolve()))
        return real_load(self, key, sr)

    mp.setattr(banks.ClipBank, "load", spy)
    try:
        assert main(["detector", "train", "--bank", str(tones), "--bank", str(bursts), "--out", str(out), *TINY]) == 0
    finally:
        mp.undo()
    return out, loaded


def test_union_detector_has_both_banks_classes_and_records_them(two_banks, trained):
    tones, bursts = two_banks
    out, _ = trained
    rec = json.loads((out / "detector.json").read_text())
    assert rec["labels"] == sorted([*TONES, *BURSTS])
    b = rec["bank"]
    assert b["given"] == [str(tones), str(bursts)]
    assert b["path"] == [str(tones.resolve()), str(bursts.resolve())]
    assert b["members"] == [{"name": "tones", "path": str(tones.resolve())},
                            {"name": "bursts", "path": str(bursts.resolve())}]
    assert b["class_bank"] == {**{c: str(tones.resolve()) for c in TONES}, **{c: str(bursts.resolve()) for c in BURSTS}}
    assert b["clips_per_class"] == dict.fromkeys(sorted([*TONES, *BURSTS]), N_TRAIN)
    assert rec["made_by"]["command"] == (f"eval-gen detector train --bank {tones} --bank {bursts} --out {out} "
                                         "--set steps=150 --set instances_per_class=8 --set vocoder_augment=false")
    det = EventDetector.load(out)  # what `eval-gen score --detector DIR` loads
    assert det.vocabulary() == {"low_tone": "a low tone", "high_tone": "a high tone",
                                "noise_burst": "a noise burst", "rising_sweep": "a rising sweep"}
    # It tells the two banks' classes apart in a sequence of held-out recordings, one from each bank.
    x = np.zeros(int(2.5 * SR), np.float32)
    for lab, at in (("rising_sweep", 0.3), ("low_tone", 1.4)):
        clip, _ = sf.read((tones if lab in TONES else bursts) / lab / f"{lab}_{N_TRAIN}.wav", dtype="float32")
        x[int(at * SR) : int(at * SR) + len(clip)] += clip
    assert det.detect_order(x, SR) == ["rising_sweep", "low_tone"]


def test_training_used_every_training_recording_of_both_banks_and_no_held_out_one(two_banks, trained):
    tones, bursts = two_banks
    _, loaded = trained
    held = _listed(tones) | _listed(bursts)
    train = (_all_files(tones) | _all_files(bursts)) - held
    assert len(held) == 4 * N_HELD and len(train) == 4 * N_TRAIN
    assert set(loaded) == train and not set(loaded) & held


def test_plus_spelling_and_get_detector_make_the_same_detector(two_banks, trained, tmp_path):
    tones, bursts = two_banks
    out, _ = trained
    made = EventDetector.load(out)
    assert main(["detector", "train", "--bank", f"{tones}+{bursts}", "--out", str(tmp_path / "plus"), *TINY]) == 0
    plus = EventDetector.load(tmp_path / "plus")
    assert plus.weights_digest() == made.weights_digest() and plus.labels == made.labels
    assert plus.record["bank"]["given"] == [f"{tones}+{bursts}"]
    assert plus.record["bank"]["path"] == made.record["bank"]["path"]
    cached = get_detector(made.cfg, cache_dir=tmp_path / "cache", bank=[str(tones), str(bursts)])
    assert cached.weights_digest() == made.weights_digest()
    assert len(list((tmp_path / "cache").glob("detector-*/detector.json"))) == 1


def test_fingerprint_follows_training_recordings_only(two_banks, tmp_path):
    import shutil

    tones, bursts = (Path(shutil.copytree(b, tmp_path / b.name)) for b in two_banks)
    spec = [str(tones), str(bursts)]
    first = bank_fingerprint(spec)
    assert bank_fingerprint(f"{tones}+{bursts}") == first
    held = bursts / "noise_burst" / f"noise_burst_{N_TRAIN}.wav"
    sf.write(held, np.random.default_rng(9).standard_normal(SR // 2).astype(np.float32) / 4, SR)
    assert bank_fingerprint(spec) == first  # a held-out recording is not part of what the detector learnt
    trained_on = bursts / "noise_burst" / "noise_burst_0.wav"
    sf.write(trained_on, np.random.default_rng(9).standard_normal(SR // 2).astype(np.float32) / 4, SR)
    assert bank_fingerprint(spec) != first


def test_ceiling_mixes_held_out_recordings_of_both_banks(two_banks, trained, tmp_path, capsys):
    tones, bursts = two_banks
    out, _ = trained
    capsys.readouterr()
    assert main(["detector", "ceiling", "--detector", str(out), "--n", "10", "--seconds", "3", "--events", "2",
                 "--quiet", "--work", str(tmp_path / "mix"), "--json", str(tmp_path / "ceil.json")]) == 0
    res = json.loads((tmp_path / "ceil.json").read_text())
    assert res["settings"]["bank"] == f"{tones.resolve()}+{bursts.resolve()}"
    assert res["n"] == 10 and res["correct"] >= 8, res["failures"]
    assert f"of {tones.resolve()}+{bursts.resolve()} in order" in capsys.readouterr().out
    held = _listed(tones) | _listed(bursts)
    used = [str(Path(c).resolve()) for it in read_manifest(tmp_path / "mix" / "manifest.jsonl") for c in it["clips"]]
    assert used and set(used) <= held
    assert set(used) & _listed(tones) and set(used) & _listed(bursts)  # both banks' hold-outs are drawn
    # The banks named on the command line instead of the detector's record: the same mix-ups.
    assert main(["detector", "ceiling", "--detector", str(out), "--bank", str(tones), "--bank", str(bursts),
                 "--n", "10", "--seconds", "3", "--events", "2", "--quiet", "--work", str(tmp_path / "mix2"),
                 "--json", str(tmp_path / "ceil2.json")]) == 0
    again = json.loads((tmp_path / "ceil2.json").read_text())
    assert again["settings"]["bank"] == f"{tones}+{bursts}" and again["correct"] == res["correct"]
    assert [it["clips"] for it in read_manifest(tmp_path / "mix2" / "manifest.jsonl")] == \
        [it["clips"] for it in read_manifest(tmp_path / "mix" / "manifest.jsonl")]


def test_single_bank_record_keeps_its_fields(two_banks, tmp_path):
    tones, _ = two_banks
    assert main(["detector", "train", "--bank", str(tones), "--out", str(tmp_path / "one"),
                 "--set", "steps=5", "--set", "instances_per_class=1", "--set", "vocoder_augment=false"]) == 0
    rec = json.loads((tmp_path / "one" / "detector.json").read_text())
    # The fields a single-bank detector.json had before unions existed, and nothing more.
    assert set(rec) == {"format", "config", "labels", "phrases", "bank", "made_by"}
    assert set(rec["bank"]) == {"name", "path", "fingerprint", "clips_per_class"}
    assert rec["bank"]["path"] == str(tones.resolve()) and rec["labels"] == sorted(TONES)


def test_clash_and_missing_bank_are_one_line(two_banks, tmp_path, capsys):
    tones, bursts = two_banks
    clash = write_bank(tmp_path / "more_tones", {"low_tone": "low", "click": "noise"}, 3)
    same_phrase = write_bank(tmp_path / "phrased", {"hum": "low", "chirp": "sweep"}, 4)
    (same_phrase / "phrases.txt").write_text("hum\ta low tone\nchirp\ta chirp\n")
    out = str(tmp_path / "o")
    for argv, needles in (
        (["--bank", str(tones), "--bank", str(clash)], ["'low_tone'", "'tones'", "'more_tones'"]),
        (["--bank", f"{tones}+{clash}"], ["'low_tone'", "one bank"]),
        (["--bank", str(tones), "--bank", str(same_phrase)], ["'a low tone'", "phrases.txt"]),
        (["--bank", str(tones), "--bank", str(tmp_path / "missing")], [str(tmp_path / "missing"), "fix the path"]),
        (["--bank", f"{tones}+{tmp_path / 'missing'}"], [str(tmp_path / "missing"), "builtin+DIR"]),
        (["--bank", str(tones), "--bank", str(tones)], ["named twice"]),
    ):
        capsys.readouterr()
        assert main(["detector", "train", *argv, "--out", out, *TINY]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(n in err[0] for n in needles), (argv, err)
    assert not Path(out).exists()


def test_builtin_plus_folder_union_trains_on_training_instances_of_both(two_banks, tmp_path, monkeypatch):
    from tclap.synth import EVENT_CLASSES, instance_split

    tones, _ = two_banks
    seen: list[str] = []
    real = {cls: cls.load for cls in (banks.ClipBank, banks.BuiltinBank)}
    for cls in real:
        monkeypatch.setattr(cls, "load", lambda self, key, sr, _f=real[cls]: (seen.append(key), _f(self, key, sr))[1])
    assert main(["detector", "train", "--bank", f"builtin+{tones}", "--out", str(tmp_path / "d"),
                 "--set", "steps=20", "--set", "instances_per_class=2", "--set", "vocoder_augment=false"]) == 0
    rec = json.loads((tmp_path / "d" / "detector.json").read_text())
    assert rec["labels"] == sorted([*EVENT_CLASSES, *TONES])
    assert rec["bank"]["class_bank"] == {**dict.fromkeys(EVENT_CLASSES, "builtin"),
                                         **dict.fromkeys(TONES, str(tones.resolve()))}
    instances = [k for k in seen if "#" in k]
    files = {str(Path(k).resolve()) for k in seen if "#" not in k}
    assert len(instances) == 2 * len(EVENT_CLASSES)
    assert sorted({k.rsplit("#", 1)[0] for k in instances}) == sorted(EVENT_CLASSES)
    assert all(instance_split(int(k.rsplit("#", 1)[1])) == "train" for k in instances)
    assert len(files) == 2 * len(TONES) and not files & _listed(tones)
