"""The shipped-model recipes on the union of the built-in bank and a folder bank of recordings, at a tiny size:
their data come from both banks' training splits, the CLAP recipe evaluates on the folder bank's held-out
recordings, the AudioLDM recipe writes both banks' events beside its models, and the records name no folder of
this machine (a bank outside the repository is BANK_DIR).

The expected events, hold-out and counts come from what the test writes (test_bank_union.write_folder_bank) and
from tclap.synth's table.
"""

from __future__ import annotations

import hashlib
import json
import shlex

import pytest
from test_bank_union import (
    HELD,
    PER_CLASS,
    PHRASES,
    _check_clips,
    _listed,
    _rel,
    write_folder_bank,
)

from tclap.data.manifest import read_manifest
from tclap.synth import EVENT_PHRASES, instance_split

ALL_EVENTS = {**EVENT_PHRASES, **PHRASES}


@pytest.fixture(scope="module")
def clap_run(tmp_path_factory):
    from conductor.recipes.clap import main

    root = tmp_path_factory.mktemp("clap_banks")
    bank = write_folder_bank(root / "recorded")
    out = root / "run"
    args = ["--out", str(out), "--n-train", "16", "--batch-size", "8", "--pretrain-steps", "2", "--warm-steps", "0",
            "--finetune-steps", "2", "--heldout-mixes", "8", "--singles-per-class", "2", "--jobs", "1",
            "--bank", "builtin", "--bank", str(bank), "--quiet"]
    assert main(args) == 0
    return out, bank


def test_clap_recipe_trains_on_both_banks_training_splits(clap_run):
    out, bank = clap_run
    n_builtin, n_files = _check_clips(read_manifest(out / "data" / "train" / "manifest.jsonl"), bank, "train")
    assert n_builtin and n_files
    singles = read_manifest(out / "data" / "single" / "manifest.jsonl")
    per_label: dict[str, list[str]] = {}
    for it in singles:
        per_label.setdefault(it["events"][0]["label"], []).append(it["clip"])
    assert sorted(per_label) == sorted(ALL_EVENTS)
    for label, clips in per_label.items():
        assert len(clips) == 2  # --singles-per-class 2 (each folder class has 3 training recordings)
        if label in PHRASES:
            assert all(_rel(bank, c) not in _listed(bank) for c in clips)
        else:
            assert all(instance_split(int(c.rsplit("#", 1)[1])) == "train" for c in clips)


def test_clap_recipe_evaluates_on_the_folder_banks_held_out_recordings(clap_run):
    out, bank = clap_run
    summary = json.loads((out / "summary.json").read_text())
    models = {"tiny-baseline", "tiny-tclap"}
    assert set(summary["results"]) == set(summary["bank_results"]) == models
    mixes = read_manifest(out / "eval_data" / "recorded" / "mixups" / "manifest.jsonl")
    assert len(mixes) == 8 and _check_clips(mixes, bank, "heldout") == (0, sum(len(it["clips"]) for it in mixes))
    single = read_manifest(out / "eval_data" / "recorded" / "single_eval.jsonl")
    assert sorted(_rel(bank, it["clip"]) for it in single) == sorted(_listed(bank))  # every held-out recording once
    assert {it["events"][0]["label"]: it["class_text"] for it in single} == PHRASES
    for name in models:
        got = summary["bank_results"][name]["recorded"]
        for k in ("t_classify_t2a", "t_classify_a2t", "t_classify_t2a_audio_blind", "r1_t2a", "r1_a2t", "zero_shot_top1"):
            assert 0.0 <= got[k] <= 100.0, (name, k)
        # zero-shot is a share of the 6 held-out recordings, in percent
        assert got["zero_shot_top1"] * len(single) / 100 == pytest.approx(round(got["zero_shot_top1"] * len(single) / 100))
        # the built-in held-out set is still evaluated, with the keys it always had
        assert "t_classify_t2a" in summary["results"][name] and "zero_shot_top1" in summary["results"][name]
    assert "recorded (held-out recordings" in (out / "summary.md").read_text()


def test_clap_recipe_record_names_the_banks_portably(clap_run):
    from conductor.recipes.clap import RecipeConfig, _command, build_parser

    out, bank = clap_run
    for name in ("tiny-baseline", "tiny-tclap"):
        text = (out / name / "recipe.json").read_text()
        assert str(bank) not in text and str(out) not in text
        rec = json.loads(text)
        assert rec["recipe"]["banks"] == ["builtin", "BANK_DIR"]
        assert rec["command"].endswith("--bank builtin --bank BANK_DIR") and "BANK_DIR" in rec["paths"]
        assert rec["command"] == _command(RecipeConfig(**rec["recipe"]))
        a = build_parser().parse_args(shlex.split(rec["command"])[3:])
        assert a.bank == ["builtin", "BANK_DIR"]
        builtin, folder = rec["banks"]
        assert builtin == {"spec": "builtin", "name": "builtin", "classes": list(EVENT_PHRASES)}
        held = "\n".join(sorted(_listed(bank)))
        assert folder == {"spec": "BANK_DIR", "name": "recorded", "classes": sorted(PHRASES),
                          "train_recordings": len(PHRASES) * (PER_CLASS - len(HELD)),
                          "heldout_recordings": len(PHRASES) * len(HELD),
                          "heldout_sha256": hashlib.sha256(held.encode()).hexdigest()}
        summary = json.loads((out / "summary.json").read_text())
        assert rec["bank_heldout_metrics"] == summary["bank_results"][name]
        assert rec["heldout_metrics"] == summary["results"][name]


def test_audioldm_recipe_writes_both_banks_events_and_a_portable_record(tmp_path, monkeypatch):
    import conductor.recipes.audioldm as recipe
    from audioldm_cond import components
    from audioldm_cond.events import read_events

    bank = write_folder_bank(tmp_path / "recorded")
    out = tmp_path / "run"
    assets = tmp_path / "assets"
    monkeypatch.setattr(components, "assets_dir", lambda: assets)  # install here, not into the package
    argv = ["--out", str(out), "--quick", "--vae", "tiny-tclap", "--conditioners", "tiny-tclap", "--no-val-generate",
            "--bank", "builtin", "--bank", str(bank), "--quiet"]
    assert recipe.main(argv) == 0
    n_builtin, n_files = _check_clips(read_manifest(out / "data" / "train" / "manifest.jsonl"), bank, "train")
    assert n_builtin and n_files
    _check_clips(read_manifest(out / "data" / "heldout" / "manifest.jsonl"), bank, "heldout")
    for folder in (out / "ldm-tiny-tclap" / "final", assets / "tiny-tclap"):
        events = read_events(folder)
        assert {e["label"]: e["phrase"] for e in events} == ALL_EVENTS and len(events) == len(ALL_EVENTS)
        source = json.loads((folder / "events.json").read_text())["source"]
        assert "builtin (13" in source and "recorded (3" in source and str(tmp_path) not in source
    text = (assets / "tiny-tclap" / "recipe.json").read_text()
    assert str(bank) not in text and str(out) not in text
    rec = json.loads(text)
    assert rec["recipe"]["banks"] == ["builtin", "BANK_DIR"] and "BANK_DIR" in rec["paths"]
    args = shlex.split(rec["command"])
    assert args[args.index("--out") + 1] == "DIR" and args[-4:] == ["--bank", "builtin", "--bank", "BANK_DIR"]
    # the recorded command gives back the recorded settings (as tests/test_shipped_records.py checks shipped ones)
    seen = {}
    monkeypatch.setattr(recipe, "run_recipe", lambda out, rc, **kw: seen.setdefault("rc", rc) and {})
    assert recipe.main([str(tmp_path / "DIR") if a == "DIR" else a for a in args[3:]]) == 0
    assert seen["rc"].banks == ("builtin", "BANK_DIR")
