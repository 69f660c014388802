"""Single-event positive-only sets: content against the synthesiser, splits, resume, file banks, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tclap.cli import main as tclap_main
from tclap.data.manifest import read_manifest
from tclap.data.singles import SinglesConfig, build_builtin_singles, build_singles
from basekit.errors import UserError
from tclap.synth import EVENT_CLASSES, EVENT_PHRASES, instance_for_split, instance_split, render_event

SR = 16000


def test_builtin_singles_are_the_rendered_train_instances(tmp_path):
    report = build_singles(SinglesConfig(per_class=3, seconds=1.0, sr=SR), tmp_path, quiet=True)
    assert report.items == 3 * len(EVENT_CLASSES) and report.written == report.items and not report.failed
    items = read_manifest(tmp_path / "manifest.jsonl", check_files=True)
    assert [it["events"][0]["label"] for it in items] == [c for c in EVENT_CLASSES for _ in range(3)]
    for k, it in enumerate(items):
        label, j = it["events"][0]["label"], k % 3
        inst = instance_for_split(j, "train")
        assert instance_split(inst) == "train" and it["clip"] == f"{label}#{inst}"
        phrase = EVENT_PHRASES[label]
        assert it["captions"] == [phrase[0].upper() + phrase[1:]] and not it.get("negative_captions")
        wav, sr = sf.read(it["audio"], dtype="float32")
        ref = render_event(label, inst, sr=SR)[:SR]  # cut to 1 s
        assert sr == SR and len(wav) == len(ref)
        np.testing.assert_allclose(wav, ref, atol=1 / 32768 + 1e-6)  # PCM_16 rounding
        assert it["events"][0]["onset"] == 0.0 and it["events"][0]["offset"] == pytest.approx(len(ref) / SR, abs=1e-6)
        assert it["relation"] == "single" and it["split"] == "train"


def test_heldout_split_uses_heldout_instances(tmp_path):
    build_singles(SinglesConfig(per_class=2, seconds=1.0, split="heldout"), tmp_path, quiet=True)
    for it in read_manifest(tmp_path / "manifest.jsonl"):
        assert instance_split(int(it["clip"].split("#")[1])) == "heldout"


def test_rerun_writes_nothing_and_other_settings_are_refused(tmp_path, capsys):
    path = build_builtin_singles(tmp_path, per_class=2, seconds=1.0)
    first = path.read_text()
    again = build_singles(SinglesConfig(per_class=2, seconds=1.0), tmp_path, quiet=True)
    assert again.written == 0 and again.items == 2 * len(EVENT_CLASSES) and path.read_text() == first
    (tmp_path / "audio" / "beep-1.wav").unlink()  # a lost file is rebuilt, the rest kept
    assert build_singles(SinglesConfig(per_class=2, seconds=1.0), tmp_path, quiet=True).written == 1
    assert path.read_text() == first
    rc = tclap_main(["singles", "--per-class", "3", "--seconds", "1", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "per_class" in err[0] and "other settings" in err[0]


def _tone(seconds, freq, lead=0.3):
    t = np.arange(int(seconds * 22050)) / 22050
    return np.concatenate([np.zeros(int(lead * 22050)), 0.25 * np.sin(2 * np.pi * freq * t)])


def test_folder_bank_takes_the_first_train_files_trims_and_counts_skips(tmp_path, capsys):
    from tclap.data.banks import folder_split

    bank = tmp_path / "bank"
    for c, label in enumerate(("dog_bark", "siren")):
        (bank / label).mkdir(parents=True)
        for i in range(8):
            sf.write(bank / label / f"{label}_{i}.wav", _tone(0.5 + 0.1 * i, 300 + 200 * c), 22050)
    (bank / "siren" / "empty.wav").write_bytes(b"")
    out = tmp_path / "o"
    assert tclap_main(["singles", "--bank", str(bank), "--per-class", "3", "--seconds", "2", "--out", str(out),
                       "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "1 bank file(s) skipped" in printed
    items = read_manifest(out / "manifest.jsonl", check_files=True)
    for label in ("dog_bark", "siren"):
        train = sorted(f for f in (bank / label).glob("*_*.wav") if folder_split(label, f.name) == "train")
        mine = [it for it in items if it["events"][0]["label"] == label]
        assert [Path(it["clip"]).name for it in mine] == [f.name for f in train[:3]]
        for it in mine:
            assert it["captions"] == [("A dog bark" if label == "dog_bark" else "A siren")]
            wav, _ = sf.read(it["audio"])
            src, _ = sf.read(it["clip"])
            # the 0.3 s of leading silence is trimmed and the clip normalised to peak 1
            assert len(wav) < len(src) * SR / 22050 - 0.25 * SR
            assert np.max(np.abs(wav)) == pytest.approx(1.0, abs=2e-3)
            assert np.sqrt(np.mean(wav[: SR // 50] ** 2)) > 0.1


@pytest.mark.parametrize("args, message", [
    (["--per-class", "0"], "--per-class 0"),
    (["--seconds", "0"], "--seconds 0"),
    (["--bank", "/no/such/bank"], "clip bank not found"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    rc = tclap_main(["singles", "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_singles_train_as_a_positive_only_pool(tmp_path):
    from tclap.data.mixup import build_builtin_mixups
    from tclap.train.data import build_pools

    singles = build_builtin_singles(tmp_path / "s", per_class=1, seconds=1.0)
    mix = build_builtin_mixups(tmp_path / "m", n=6, seconds=3.0)
    data = build_pools([str(mix)], [str(singles)], require_negatives=True, unpaired="positive")
    n_overlap = sum(1 for it in read_manifest(mix) if not it.get("negative_captions"))
    assert len(data.positive) == len(EVENT_CLASSES) + n_overlap and len(data.temporal) == 6 - n_overlap
    assert all(neg == [] for neg in data.positive.negatives)
    assert json.loads((tmp_path / "s" / "singles_config.json").read_text())["per_class"] == 1


def test_singles_as_webdataset_tars_match_the_manifest_set_and_resume(tmp_path):
    import io

    import webdataset as wds

    args = ["singles", "--per-class", "2", "--seconds", "1", "--quiet"]
    assert tclap_main(args + ["--out", str(tmp_path / "m")]) == 0
    assert tclap_main(args + ["--out", str(tmp_path / "w"), "--format", "webdataset", "--shard-items", "10"]) == 0
    items = {it["id"]: it for it in read_manifest(tmp_path / "m" / "manifest.jsonl")}
    tars = sorted((tmp_path / "w").glob("singles-*.tar"))
    assert len(tars) == -(-len(items) // 10) and not (tmp_path / "w" / "manifest.jsonl").exists()
    seen = []
    for s in wds.WebDataset([str(t) for t in tars], shardshuffle=False):
        meta = json.loads(s["json"])
        seen.append(meta["id"])
        ref, _ = sf.read(items[meta["id"]]["audio"], dtype="int16")  # the manifest's clip, sample for sample
        got, _ = sf.read(io.BytesIO(s["wav"]), dtype="int16")
        assert np.array_equal(ref, got) and meta["captions"] == items[meta["id"]]["captions"]
    assert sorted(seen) == sorted(items)
    before = tars[0].read_bytes()
    tars[0].unlink()
    assert tclap_main(args + ["--out", str(tmp_path / "w"), "--format", "webdataset", "--shard-items", "10"]) == 0
    assert tars[0].read_bytes() == before  # rebuilt byte for byte
    index = json.loads((tmp_path / "w" / "singles.index.json").read_text())
    assert index["total"] == len(items)
