"""Several clip banks read as one: the union's classes, each bank's hold-out kept, clashes, and the '+' spelling.

The expected classes, phrases and hold-out come from what the test writes (the folder bank, its heldout.txt and
phrases.txt) and from tclap.synth's own tables, not from the bank reader under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from basekit.errors import UserError
from tclap.cli import main as tclap_main
from tclap.data.banks import UnionBank, bank_setting, open_bank, split_bank_spec
from tclap.data.manifest import read_manifest
from tclap.synth import EVENT_PHRASES, instance_split

SR = 22050
PHRASES = {"dog_bark": "a dog barks", "door_knock": "someone knocks on a door", "rain": "rain falls"}
PER_CLASS = 5
HELD = (1, 3)  # recordings of each class listed in heldout.txt


def write_folder_bank(root: Path, phrases: dict[str, str] = PHRASES, held=HELD) -> Path:
    """``root/<label>/<label>_<i>.wav``: 5 distinct synthetic recordings per class (a tone over noise, each its own
    pitch and length), ``heldout.txt`` listing recordings ``held`` of each class, and ``phrases.txt``."""
    rng = np.random.default_rng(7)
    for c, label in enumerate(phrases):
        (root / label).mkdir(parents=True)
        for i in range(PER_CLASS):
            t = np.arange(int((0.6 + 0.1 * i) * SR)) / SR
            x = 0.4 * np.sin(2 * np.pi * (220 + 170 * c + 25 * i) * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(root / label / f"{label}_{i}.wav", x.astype(np.float32), SR)
    listed = [f"{label}/{label}_{i}.wav" for label in phrases for i in held]
    (root / "heldout.txt").write_text("\n".join(listed) + "\n")
    (root / "phrases.txt").write_text("".join(f"{k}\t{v}\n" for k, v in phrases.items()))
    return root


@pytest.fixture()
def bank(tmp_path) -> Path:
    return write_folder_bank(tmp_path / "recorded")


def _listed(bank: Path) -> set[str]:
    return {ln for ln in (bank / "heldout.txt").read_text().splitlines() if ln}


def _rel(bank: Path, clip: str) -> str:
    return str(Path(clip).resolve().relative_to(bank.resolve()))


def _check_clips(items, bank: Path, split: str) -> tuple[int, int]:
    """Every clip of every item is of ``split`` in its own bank; returns (#built-in clips, #recordings) used."""
    listed, n_builtin, n_files = _listed(bank), 0, 0
    for it in items:
        labels = [e["label"] for e in sorted(it["events"], key=lambda e: e["onset"])]
        assert len(it["clips"]) == len(labels)
        for clip in it["clips"]:
            if Path(clip).is_file():
                rel = _rel(bank, clip)
                assert (rel in listed) == (split == "heldout"), (split, rel)
                assert rel.split("/")[0] in labels
                n_files += 1
            else:
                label, inst = clip.rsplit("#", 1)
                assert label in EVENT_PHRASES and instance_split(int(inst)) == split, clip
                n_builtin += 1
    return n_builtin, n_files


# ------------------------------------------------------------------------------------------------ the union
@pytest.mark.parametrize("spelling", ["list", "plus", "stream"])
def test_union_holds_both_banks_classes_phrases_and_hold_out(bank, spelling):
    spec = {"list": ["builtin", str(bank)], "plus": f"builtin+{bank}", "stream": f"bank:builtin+bank:{bank}"}[spelling]
    b = open_bank(spec)
    assert isinstance(b, UnionBank) and b.name == "builtin+recorded"
    want = sorted([*EVENT_PHRASES, *PHRASES])
    assert b.labels("train") == b.labels("heldout") == want
    assert b.phrases == {**EVENT_PHRASES, **PHRASES}
    held = {_rel(bank, k) for keys in b.clips["heldout"].values() for k in keys}
    train = {_rel(bank, k) for keys in b.clips["train"].values() for k in keys}
    assert held == _listed(bank) and len(train) == len(PHRASES) * PER_CLASS - len(held) and not held & train
    assert b.keys("rain", "heldout") == [str(bank / "rain" / f"rain_{i}.wav") for i in HELD]
    assert [k.split("#")[0] for k in b.keys("beep", "heldout", 2)] == ["beep", "beep"]
    # a clip of each bank loads through the union as through its own bank
    rng = np.random.default_rng(0)
    for label in ("bell", "door_knock"):
        key = b.draw(label, "train", rng)
        np.testing.assert_array_equal(b.load(key, 16000), b.owner(label).load(key, 16000))


def test_training_mixups_never_use_held_out_recordings_and_pair_events_of_both_banks(bank, tmp_path, capsys):
    out = tmp_path / "train"
    args = ["mixup", "--n", "40", "--seconds", "3", "--events", "2", "--overlap-prob", "0", "--out", str(out), "--quiet"]
    assert tclap_main([*args, "--bank", "builtin", "--bank", str(bank)]) == 0
    items = read_manifest(out / "manifest.jsonl", check_files=True)
    assert len(items) == 40 and all(it["source"] == "mixup:builtin+recorded" for it in items)
    n_builtin, n_files = _check_clips(items, bank, "train")
    assert n_builtin and n_files
    mixed = [it for it in items if any(Path(c).is_file() for c in it["clips"]) and any("#" in c for c in it["clips"])]
    assert mixed  # a procedural event and a recorded one in one clip
    assert json.loads((out / "mixup_config.json").read_text())["bank"] == ["builtin", str(bank)]
    # the '+' spelling is the same setting: the set resumes (nothing rebuilt) instead of being refused
    capsys.readouterr()
    assert tclap_main([*args, "--bank", f"builtin+{bank}"]) == 0
    assert "written 0, skipped-existing 40, failed 0" in capsys.readouterr().out
    assert read_manifest(out / "manifest.jsonl") == items
    # the held-out split: only listed recordings and held-out instances
    held_out = tmp_path / "heldout"
    assert tclap_main(["mixup", "--bank", "builtin", "--bank", str(bank), "--split", "heldout", "--n", "30",
                       "--seconds", "3", "--out", str(held_out), "--quiet"]) == 0
    n_builtin, n_files = _check_clips(read_manifest(held_out / "manifest.jsonl"), bank, "heldout")
    assert n_builtin and n_files


def test_singles_of_a_union_take_each_bank_split(bank, tmp_path):
    out = tmp_path / "single"
    assert tclap_main(["singles", "--bank", "builtin", "--bank", str(bank), "--split", "heldout", "--per-class", "3",
                       "--seconds", "1", "--out", str(out), "--quiet"]) == 0
    items = read_manifest(out / "manifest.jsonl", check_files=True)
    by_label: dict[str, list[str]] = {}
    for it in items:
        by_label.setdefault(it["events"][0]["label"], []).append(it["clip"])
    assert sorted(by_label) == sorted([*EVENT_PHRASES, *PHRASES])
    for label, clips in by_label.items():
        if label in PHRASES:  # all (2) of its held-out recordings: fewer than --per-class 3
            assert sorted(_rel(bank, c) for c in clips) == [f"{label}/{label}_{i}.wav" for i in HELD]
        else:
            assert len(clips) == 3 and all(instance_split(int(c.rsplit("#", 1)[1])) == "heldout" for c in clips)
    assert {it["captions"][0] for it in items if it["events"][0]["label"] == "rain"} == {"Rain falls"}


def test_stream_source_bank_union_draws_training_clips_of_both_banks(bank):
    from tclap.data.stream import CountCache, build_plan
    from tclap.data.stream.readers import BankReader
    from tclap.data.stream.sources import BANK, parse_source
    from tclap.train.config import preset

    src = parse_source(f"bank:builtin+{bank}")
    assert src.kind == BANK
    cfg = preset("tiny")
    cfg.steps, cfg.data.batch_size, cfg.data.workers, cfg.data.bank_seconds = 4, 8, 0, 3.0
    plan = build_plan(cfg, [src.text], [], 1, 16000, 4.0, CountCache(None), quiet=True)
    assert plan.streams[0].labels == sorted([*EVENT_PHRASES, *PHRASES])
    reader = BankReader(plan, 0, 0, lambda t: None)
    items = [it.meta for m in range(4) for it in reader.take(m)]
    n_builtin, n_files = _check_clips(items, bank, "train")
    assert n_builtin and n_files


def test_a_phrases_file_sets_phrases_across_the_union(bank, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("rain\theavy rain pours\nbeep\ta short beep\n")
    b = open_bank(["builtin", str(bank)], phrases_file=f)
    assert b.phrases == {**EVENT_PHRASES, **PHRASES, "rain": "heavy rain pours", "beep": "a short beep"}
    f.write_text("thunder\tthunder rolls\n")
    with pytest.raises(UserError, match="thunder"):
        open_bank(["builtin", str(bank)], phrases_file=f)


# ------------------------------------------------------------------------------------------------ clashes
def test_a_class_in_two_banks_is_one_line_naming_both(tmp_path, capsys):
    clash = write_folder_bank(tmp_path / "mine", phrases={"beep": "an alarm beeps", "rain": "rain falls"})
    with pytest.raises(UserError, match=r"class 'beep' is in both clip bank 'builtin' and clip bank 'mine'"):
        open_bank(["builtin", str(clash)])
    rc = tclap_main(["mixup", "--bank", "builtin", "--bank", str(clash), "--n", "2", "--seconds", "3",
                     "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "'beep'" in err[0] and "'builtin'" in err[0] and "'mine'" in err[0]
    assert not (tmp_path / "o" / "manifest.jsonl").exists()
    other = write_folder_bank(tmp_path / "other", phrases={"rain": "a downpour", "wind": "wind blows"})
    with pytest.raises(UserError, match=r"class 'rain' is in both clip bank 'mine' and clip bank 'other'"):
        open_bank([str(clash), str(other)])


def test_a_phrase_in_two_banks_and_a_bank_named_twice_are_errors(bank, tmp_path):
    same = write_folder_bank(tmp_path / "same", phrases={"alarm": "a beep", "wind": "wind blows"})
    with pytest.raises(UserError, match=r"class 'beep' of clip bank 'builtin' and class 'alarm' of clip bank 'same'"):
        open_bank(["builtin", str(same)])
    with pytest.raises(UserError, match="named twice"):
        open_bank(["builtin", "builtin"])
    with pytest.raises(UserError, match="named twice"):
        open_bank([str(bank), str(bank / "rain" / "..")])


# ------------------------------------------------------------------------------------------------ spelling
def test_plus_spelling_is_read_one_way_or_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_folder_bank(tmp_path / "a+b")
    single = open_bank("a+b")  # a folder whose name holds '+', alone: that folder
    assert not isinstance(single, UnionBank) and single.name == "a+b" and single.labels("train") == sorted(PHRASES)
    assert split_bank_spec("bank:a+b") == ["a+b"]
    with pytest.raises(UserError, match="not found: 'nothere'"):
        open_bank("builtin+nothere")
    with pytest.raises(UserError, match="empty part"):
        open_bank("builtin++a+b")
    write_folder_bank(tmp_path / "a", phrases={"anvil": "an anvil rings", "axe": "an axe chops"})
    write_folder_bank(tmp_path / "b", phrases={"bee": "a bee buzzes", "bus": "a bus passes"})
    with pytest.raises(UserError, match="ambiguous"):
        open_bank("a+b")
    union = open_bank(["a", "b"])  # the way out: one bank per --bank
    assert union.labels("train") == ["anvil", "axe", "bee", "bus"]
    assert open_bank("builtin+a").name == "builtin+a"


def test_bank_setting_keeps_a_single_bank_as_written_and_lists_a_union(bank):
    assert bank_setting(["builtin"]) == "builtin"
    assert bank_setting([f"bank:{bank}"]) == f"bank:{bank}"  # sets built before unions keep their settings
    assert bank_setting(["builtin", str(bank)]) == bank_setting([f"builtin+{bank}"]) == ("builtin", str(bank))
    with pytest.raises(UserError, match="bank:DIR"):
        open_bank("bank:")
