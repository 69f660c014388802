"""Each shipped model's ``recipe.json`` names the command that makes it and no folder of the machine it was made on.

The recorded command is parsed by the recipe's own command line (its run replaced by a stub that captures the
settings) and must give back exactly the recorded settings; the records are searched for absolute paths.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLAP_ASSETS = ROOT / "tclap" / "assets" / "models"
LDM_ASSETS = ROOT / "audioldm_cond" / "assets" / "models"
NAMES = ("tiny-baseline", "tiny-tclap")
# An absolute POSIX path anywhere in a string ("/work/runs/x", "--out /home/u/r", "a=/tmp/b"), or a Windows drive.
_ABSOLUTE = re.compile(r"(?:^|[\s=,:'\"])/[\w.~-]+/|(?:^|[\s=,])[A-Za-z]:\\")


def _record(path: Path) -> dict:
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} is not in the checkout")
    return json.loads(path.read_text())


def _strings(obj) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def test_the_absolute_path_check_on_hand_written_strings():
    bad = ["/work/runs/x/model", "--out /home/u/r --quiet", "tiny-tclap=/tmp/c/model", "C:\\runs\\x"]
    good = ["runs/warm/model", "DIR/ldm-tiny-tclap/final", "--out DIR --seed 0", "audioldm_cond/assets/models/x",
            "T-CLAP/AudioLDM", "a 1/2 split"]
    assert [bool(_ABSOLUTE.search(s)) for s in bad] == [True] * 4
    assert [bool(_ABSOLUTE.search(s)) for s in good] == [False] * 6


@pytest.mark.parametrize("path", [CLAP_ASSETS / n / "recipe.json" for n in NAMES]
                         + [LDM_ASSETS / n / "recipe.json" for n in NAMES], ids=lambda p: "/".join(p.parts[-4:-1]))
def test_shipped_record_holds_no_path_of_the_machine_it_was_made_on(path):
    found = [s for s in _strings(_record(path)) if _ABSOLUTE.search(s)]
    assert not found, f"{path.relative_to(ROOT)} names folders of the machine it was made on: {found[:3]}"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_clap_record_command_gives_back_its_settings(name):
    from conductor.recipes.clap import RecipeConfig, _command, build_parser

    rec = _record(CLAP_ASSETS / name / "recipe.json")
    rc = RecipeConfig(**rec["recipe"])
    assert rec["command"] == _command(rc), "the record's command is not the one its settings give"
    args = shlex.split(rec["command"])
    assert args[:3] == ["python", "-m", "conductor.recipes.clap"] and args[args.index("--out") + 1] == "DIR"
    a = build_parser().parse_args(args[3:])
    parsed = RecipeConfig(seed=a.seed, n_train=a.n_train, batch_size=a.batch_size, pretrain_steps=a.pretrain_steps,
                          warm_steps=a.warm_steps, finetune_steps=a.finetune_steps, finetune_lr=a.finetune_lr,
                          lambda_t=a.lambda_t, negative_audio=not a.no_negative_audio, unpaired=a.unpaired,
                          singles_per_class=a.singles_per_class, wise_alpha=a.wise_alpha, baseline=a.baseline,
                          heldout_mixes=a.heldout_mixes, mixed_precision=a.mixed_precision,
                          banks=tuple(a.bank) if a.bank else RecipeConfig().banks)
    assert dataclasses.asdict(parsed) == dataclasses.asdict(rc)
    # the stages start where the command's run folder puts them
    stages = rec["stages"]
    assert stages["pretrain"]["train_config"]["init"] == "tiny"
    assert stages["warm"]["train_config"]["init"] == "runs/pretrain/model"
    last = "tclap" if name == "tiny-tclap" else "baseline"
    assert stages[last]["train_config"]["init"] == "runs/warm/model"
    assert stages[last]["positive"] == (["data/single/manifest.jsonl"] if rc.singles_per_class else [])


@pytest.mark.parametrize("name", NAMES)
def test_shipped_audioldm_record_command_gives_back_its_settings(name, monkeypatch, tmp_path):
    import conductor.recipes.audioldm as recipe
    from conductor.recipes.records import portable

    rec = _record(LDM_ASSETS / name / "recipe.json")
    args = shlex.split(rec["command"])
    assert args[:3] == ["python", "-m", "conductor.recipes.audioldm"] and args[args.index("--out") + 1] == "DIR"
    seen = {}

    def capture(out, rc, **kwargs):
        seen["rc"] = rc
        return {}

    monkeypatch.setattr(recipe, "run_recipe", capture)
    argv = [str(tmp_path / "DIR") if a == "DIR" else a for a in args[3:]]
    assert recipe.main(argv) == 0
    got = json.loads(json.dumps(portable(dataclasses.asdict(seen["rc"]), tmp_path / "DIR")))
    # a setting added since the record was written (e.g. banks) must be at its default, which the command then gives
    default = json.loads(json.dumps(portable(dataclasses.asdict(recipe.RecipeConfig()), tmp_path / "DIR")))
    want = {**{k: default[k] for k in got if k not in rec["recipe"]}, **rec["recipe"]}
    assert got == want, {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert rec["stages"][f"ldm-{name}"]["final"] == f"DIR/ldm-{name}/final"


def test_portable_rewrites_the_run_folder_and_the_repository_root(tmp_path, monkeypatch):
    from conductor.recipes.records import portable

    run = tmp_path / "r"
    record = {"command": f"python -m x --out {run} --vae y", "n": 3,
              "stages": {"a": {"final": f"{run}/ldm/final", "other": f"{run}2/x", "same": str(run)},
                         "v": [str(ROOT / "audioldm_cond" / "assets" / "models" / "tiny-tclap")]}}
    assert portable(record, run) == {"command": "python -m x --out DIR --vae y", "n": 3,
                                     "stages": {"a": {"final": "DIR/ldm/final", "other": f"{run}2/x", "same": "DIR"},
                                                "v": ["audioldm_cond/assets/models/tiny-tclap"]}}
    monkeypatch.chdir(tmp_path)  # a relative --out: only whole paths that start with it
    assert portable({"a": "r/final", "b": "vae r", "c": "r"}, "r") == {"a": "DIR/final", "b": "vae r", "c": "DIR"}
