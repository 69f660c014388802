"""Temporal mix-ups: onsets vs. the audio's energy, negative audio, no held-out leakage, shards, resume."""

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tclap.cli import main as tclap_main
from tclap.data.banks import BuiltinBank
from tclap.data.captions import parse_event_order
from tclap.data.manifest import read_manifest
from tclap.data.mixup import MixupConfig, build_builtin_mixups, build_item, build_mixups
from basekit.errors import UserError

SR = 16000
FRAME = 160  # 10 ms


def _frame_rms(wav):
    n = len(wav) // FRAME
    return np.sqrt(np.mean(wav[: n * FRAME].astype(np.float64).reshape(n, FRAME) ** 2, axis=1))


def _check_envelope(path, events, sr=SR, threshold=1e-3):
    """Independent check: frames outside every event are silent; each event is loud at its onset."""
    wav, file_sr = sf.read(path, dtype="float32")
    assert file_sr == sr
    rms = _frame_rms(wav)
    hop = FRAME / sr
    for f, r in enumerate(rms):
        t0, t1 = f * hop, (f + 1) * hop
        inside = any(t1 > e["onset"] and t0 < e["offset"] for e in events)
        if not inside:
            assert r == 0.0, f"{path}: energy at {t0:.2f} s outside every event"
    for e in events:
        first = int(np.ceil(e["onset"] / hop))  # the first whole frame after the onset
        assert rms[first] > threshold, f"{path}: {e['label']} silent at its onset {e['onset']}"
        before = int(np.floor(e["onset"] / hop)) - 1  # the last whole frame before the onset
        assert before < 0 or rms[before] == 0.0 or any(
            o["onset"] < e["onset"] < o["offset"] for o in events if o is not e
        ), "energy just before an isolated event's onset"
    active = np.nonzero(rms > threshold)[0]
    assert active[0] * hop <= min(e["onset"] for e in events) + hop
    assert (active[-1] + 1) * hop <= max(e["offset"] for e in events) + hop


@pytest.fixture(scope="module")
def builtin_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix")
    cfg = MixupConfig(seconds=4.0, sr=SR, overlap_prob=0.3, seed=3)
    report = build_mixups(cfg, out, 16, quiet=True)
    assert report.written == 16 and not report.failed
    return out, cfg, read_manifest(out / "manifest.jsonl", check_files=True)


def test_manifest_fields_and_relative_paths(builtin_set):
    out, _, items = builtin_set
    raw = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(raw) == 16
    relations = {it["relation"] for it in raw}
    assert relations == {"sequence", "overlap"}  # both kinds at overlap_prob 0.3
    for r, it in zip(raw, items):
        assert r["audio"] == f"audio/{r['id']}.wav"  # relative to the manifest
        assert Path(it["audio"]).is_absolute()
        assert r["split"] == "train" and r["source"] == "mixup:builtin"
        n_events = len(r["events"])
        if r["relation"] == "sequence":
            assert 2 <= n_events <= 3
            assert r["negative_audio"] == f"negative_audio/{r['id']}.wav"
            assert len(r["negative_captions"]) == 1 and r["negative_captions"][0] != r["captions"][0]
        else:
            assert n_events == 2 and r["negative_captions"] == [] and "negative_audio" not in r
        for e in r["events"]:
            assert 0 <= e["onset"] < e["offset"] <= 4.0


def test_onsets_agree_with_the_energy_envelope(builtin_set):
    _, _, items = builtin_set
    for it in items:
        _check_envelope(it["audio"], it["events"])
        if it.get("negative_audio"):
            _check_envelope(it["negative_audio"], it["negative_events"])


def test_ordered_events_do_not_overlap_and_overlap_events_do(builtin_set):
    _, _, items = builtin_set
    for it in items:
        ev = it["events"]
        if it["relation"] == "sequence":
            assert all(a["offset"] + 0.149 <= b["onset"] for a, b in zip(ev, ev[1:]))  # >= 0.15 s gaps
        else:
            assert ev[1]["onset"] < ev[0]["offset"]


def test_negative_audio_holds_the_same_events_reversed(builtin_set):
    _, _, items = builtin_set
    for it in items:
        if it["relation"] != "sequence":
            continue
        pos, _ = sf.read(it["audio"], dtype="int16")
        neg, _ = sf.read(it["negative_audio"], dtype="int16")
        ev, nev = it["events"], it["negative_events"]
        assert [e["label"] for e in nev] == [e["label"] for e in ev][::-1]
        # same instances: the samples of each event are identical in both files (same scale, same quantiser)
        for e in ev:
            (m,) = [x for x in nev if x["label"] == e["label"]]
            a = pos[round(e["onset"] * SR) : round(e["offset"] * SR)]
            b = neg[round(m["onset"] * SR) : round(m["offset"] * SR)]
            assert np.array_equal(a, b)
        gaps = [round((b["onset"] - a["offset"]) * SR) for a, b in zip(ev, ev[1:])]
        ngaps = [round((b["onset"] - a["offset"]) * SR) for a, b in zip(nev, nev[1:])]
        assert ngaps == gaps[::-1]
        assert nev[0]["onset"] == ev[0]["onset"] and nev[-1]["offset"] == ev[-1]["offset"]
        # peak-normalised (one scale for both), never clipped
        assert np.abs(pos).max() <= 32767 * 0.91


def test_captions_say_the_order_of_the_audio(builtin_set):
    _, _, items = builtin_set
    for it in items:
        labels = [e["label"] for e in it["events"]]
        if it["relation"] == "sequence":
            assert parse_event_order(it["captions"][0]) == labels
            assert parse_event_order(it["negative_captions"][0]) == labels[::-1]
        else:
            assert parse_event_order(it["captions"][0]) is None
            assert set(labels) <= {lab for lab in BuiltinBank().phrases if BuiltinBank().phrases[lab].lower() in it["captions"][0].lower()}


def test_heldout_instances_never_reach_training_mixes():
    bank = BuiltinBank()
    for split, want in (("train", False), ("heldout", True)):
        cfg = MixupConfig(seconds=3.0, split=split, seed=1)
        for k in range(40):
            item, _, _ = build_item(bank, cfg, k)
            for key in item["clips"]:
                inst = int(key.rsplit("#", 1)[1])
                assert (inst % 5 == 4) is want, (split, key)


def test_items_are_deterministic_and_depend_on_seed():
    bank = BuiltinBank()
    cfg = MixupConfig(seconds=3.0, seed=7)
    a = build_item(bank, cfg, 5)
    b = build_item(bank, cfg, 5)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    c = build_item(bank, MixupConfig(seconds=3.0, seed=8), 5)
    assert not np.array_equal(a[1], c[1])


def _digest_dir(out):
    files = sorted(p for p in (Path(out) / "audio").iterdir()) + sorted((Path(out) / "negative_audio").iterdir())
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_shards_add_up_to_the_full_set_and_resume(tmp_path):
    args = ["mixup", "--bank", "builtin", "--n", "10", "--seconds", "3", "--seed", "2", "--quiet"]
    assert tclap_main(args + ["--out", str(tmp_path / "full")]) == 0
    assert tclap_main(args + ["--out", str(tmp_path / "parts"), "--shard", "0/2"]) == 0
    part0 = [json.loads(x)["id"] for x in (tmp_path / "parts" / "manifest.jsonl").read_text().splitlines()]
    assert part0 == [f"train-s2-{k:07d}" for k in range(0, 10, 2)]
    assert tclap_main(args + ["--out", str(tmp_path / "parts"), "--shard", "1/2"]) == 0
    full_manifest = (tmp_path / "full" / "manifest.jsonl").read_text()
    assert (tmp_path / "parts" / "manifest.jsonl").read_text() == full_manifest
    assert _digest_dir(tmp_path / "parts") == _digest_dir(tmp_path / "full")

    # Resume after a "kill": lose two audio files and one sidecar; the re-run rebuilds exactly those items.
    full = tmp_path / "full"
    (full / "audio" / "train-s2-0000003.wav").unlink()
    (full / "negative_audio").joinpath("train-s2-0000007.wav").unlink(missing_ok=True)
    (full / "items" / "train-s2-0000008.json").unlink()
    before = _digest_dir(tmp_path / "parts")
    report = build_mixups(MixupConfig(seconds=3.0, seed=2), full, 10, quiet=True)
    rebuilt = 3 if json.loads((full / "items" / "train-s2-0000007.json").read_text()).get("negative_audio") else 2
    assert report.written == rebuilt and report.skipped_existing == 10 - rebuilt
    assert (full / "manifest.jsonl").read_text() == full_manifest
    assert _digest_dir(full) == before


def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys):
    assert tclap_main(["mixup", "--n", "2", "--seconds", "3", "--out", str(tmp_path), "--quiet"]) == 0
    assert tclap_main(["mixup", "--n", "2", "--seconds", "4", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seconds" in err[0] and "other settings" in err[0]


def test_build_builtin_mixups_returns_the_manifest(tmp_path):
    path = build_builtin_mixups(tmp_path / "m", n=4, seconds=3, split="heldout", seed=5)
    assert path == tmp_path / "m" / "manifest.jsonl"
    items = read_manifest(path, check_files=True)
    assert len(items) == 4 and all(it["split"] == "heldout" for it in items)


def test_workers_give_the_same_set(tmp_path):
    cfg = MixupConfig(seconds=3.0, seed=4)
    build_mixups(cfg, tmp_path / "one", 6, quiet=True)
    build_mixups(cfg, tmp_path / "two", 6, workers=2, quiet=True)
    assert _digest_dir(tmp_path / "one") == _digest_dir(tmp_path / "two")
    assert (tmp_path / "one" / "manifest.jsonl").read_text() == (tmp_path / "two" / "manifest.jsonl").read_text()


def test_webdataset_shards(tmp_path):
    """A manifest's items as tar shards (write_webdataset_shards), read back by webdataset itself, with an index.
    (`tclap mixup --format webdataset` writes tars without a manifest: tests/test_stream.py.)"""
    import webdataset as wds

    from tclap.data.shards import read_indexes, write_webdataset_shards

    assert tclap_main(["mixup", "--n", "4", "--seconds", "3", "--out", str(tmp_path), "--quiet"]) == 0
    items = read_manifest(tmp_path / "manifest.jsonl")
    paths = write_webdataset_shards(tmp_path / "manifest.jsonl", tmp_path / "shards", items_per_shard=3)
    shards = sorted(str(p) for p in (tmp_path / "shards").glob("*.tar"))
    assert shards == [str(p) for p in paths] and len(shards) == 2
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [it["id"] for it in items]
    for s, it in zip(samples, items):
        assert s["wav"] == Path(it["audio"]).read_bytes()
        assert json.loads(s["json"])["captions"] == it["captions"]
        if it.get("negative_audio"):
            assert s["neg.wav"] == Path(it["negative_audio"]).read_bytes()
    index = read_indexes(tmp_path / "shards")
    assert [index[Path(p).name].items for p in shards] == [3, 1]
    assert sum(i.with_negative for i in index.values()) == sum(1 for it in items if it["negative_captions"])
    assert write_webdataset_shards(tmp_path / "manifest.jsonl", tmp_path / "again", items_per_shard=3)[0].read_bytes() == \
        Path(shards[0]).read_bytes()  # the same manifest gives byte-identical shards


# ---------------------------------------------------------------------------------------------------------
# Folder and ESC-50 banks, and bad banks.


def _tone(seconds, sr, freq, lead=0.2, stereo=False):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    x = np.concatenate([np.zeros(int(lead * sr)), x, np.zeros(int(0.3 * sr))])  # silent padding, as in ESC-50
    return np.stack([x, 0.8 * x], axis=1) if stereo else x


def _folder_bank(root, classes=("dog_bark", "siren")):
    for c, label in enumerate(classes):
        d = root / label
        d.mkdir(parents=True)
        for i in range(6):
            sf.write(d / f"{label}_{i}.wav", _tone(0.6 + 0.1 * i, 22050, 300 + 200 * c + 20 * i, stereo=i % 2 == 1), 22050)
        sf.write(d / f"{label}_x.flac", _tone(0.8, 44100, 900 + 100 * c), 44100)
    return root


def test_folder_bank_with_bad_files_reports_the_skips(tmp_path, capsys):
    bank = _folder_bank(tmp_path / "bank")
    (bank / "siren" / "corrupt.wav").write_bytes(b"RIFF not really a wave file")
    (bank / "siren" / "empty.wav").write_bytes(b"")
    sf.write(bank / "dog_bark" / "short.wav", 0.5 * np.ones(int(0.1 * 16000)), 16000)
    rc = tclap_main(["mixup", "--bank", str(bank), "--n", "6", "--seconds", "4", "--out", str(tmp_path / "o"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "3 file(s) skipped" in out
    skipped = (tmp_path / "o" / "skipped_clips.tsv").read_text()
    for name, why in (("corrupt.wav", "cannot decode"), ("empty.wav", "empty"), ("short.wav", "shorter than 0.25")):
        assert any(name in line and why in line for line in skipped.splitlines()), (name, skipped)
    items = read_manifest(tmp_path / "o" / "manifest.jsonl", check_files=True)
    assert len(items) == 6
    for it in items:
        assert it["source"] == "mixup:bank"
        assert all(Path(c).name not in ("corrupt.wav", "empty.wav", "short.wav") for c in it["clips"])
        assert any(p in it["captions"][0] for p in ("a dog bark", "a siren"))
        _check_envelope(it["audio"], it["events"])  # leading silence of the files was trimmed
        if it.get("negative_audio"):
            _check_envelope(it["negative_audio"], it["negative_events"])


def test_folder_bank_heldout_files_stay_out_of_training(tmp_path):
    import zlib

    bank = _folder_bank(tmp_path / "bank")
    held = {f"{d.name}/{f.name}" for d in bank.iterdir() for f in d.iterdir() if zlib.crc32(f"{d.name}/{f.name}".encode()) % 5 == 4}
    assert held  # the fixture has held-out files
    report = build_mixups(MixupConfig(bank=str(bank), seconds=4.0), tmp_path / "o", 12, quiet=True)
    assert not report.failed
    for it in read_manifest(tmp_path / "o" / "manifest.jsonl"):
        for c in it["clips"]:
            assert f"{Path(c).parent.name}/{Path(c).name}" not in held


def test_esc50_csv_bank_keeps_test_folds_out(tmp_path):
    root = tmp_path / "ESC-50"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    for target, cat in enumerate(["dog", "rooster", "church_bells"]):
        for fold in range(1, 6):
            name = f"{fold}-{target}-A-{target}.wav"
            sf.write(root / "audio" / name, _tone(1.0, 44100, 400 + 300 * target + 10 * fold), 44100)
            rows.append({"filename": name, "fold": fold, "target": target, "category": cat, "esc10": "False"})
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    csv_path = str(root / "meta" / "esc50.csv")
    for split in ("train", "heldout"):
        out = tmp_path / split
        assert tclap_main(["mixup", "--bank", csv_path, "--n", "8", "--seconds", "5", "--out", str(out),
                           "--split", split, "--test-folds", "4,5", "--quiet"]) == 0
        items = read_manifest(out / "manifest.jsonl", check_files=True)
        folds = {int(Path(c).name.split("-")[0]) for it in items for c in it["clips"]}
        assert folds <= ({1, 2, 3} if split == "train" else {4, 5})
        phrases = " ".join(it["captions"][0] for it in items)
        assert "a church bells" in phrases or "a dog" in phrases or "a rooster" in phrases
        assert all(it["source"] == "mixup:esc50" for it in items)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _folder_bank(p, classes=("dog_bark",)), "needs at least 2 classes"),
        (lambda p: p, "clip bank not found"),
        (lambda p: (p.mkdir(), p)[1], "no class sub-folders"),
    ],
)
def test_bad_banks_exit_2_with_one_line(tmp_path, capsys, make, message):
    bank = make(tmp_path / "bank")
    rc = tclap_main(["mixup", "--bank", str(bank), "--n", "2", "--seconds", "4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_bad_arguments_are_user_errors(tmp_path, capsys):
    from tclap.data.mixup import parse_shard

    with pytest.raises(UserError, match="too short"):
        build_mixups(MixupConfig(seconds=0.5), tmp_path, 2)
    with pytest.raises(UserError, match="i/n"):
        parse_shard("3")
    with pytest.raises(UserError, match="0 <= i < n"):
        parse_shard("2/2")
    with pytest.raises(UserError, match="--n"):
        build_mixups(MixupConfig(seconds=3), tmp_path, 0)
    rc = tclap_main(["mixup", "--n", "2", "--seconds", "3", "--out", str(tmp_path), "--overlap-prob", "1.5"])
    assert rc == 2 and "--overlap-prob" in capsys.readouterr().err


def test_strict_mode_stops_at_a_bad_clip(tmp_path):
    bank = _folder_bank(tmp_path / "bank")
    (bank / "siren" / "empty.wav").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        build_mixups(MixupConfig(bank=str(bank), seconds=4.0), tmp_path / "o", 2, strict=True)
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
