"""Study files: `mos validate` lists every problem; balanced orders (checked by brute-force counting)."""

import math
from collections import Counter

import pytest
import yaml

from demo.assign import latin_window, rater_order
from demo.cli import main
from basekit.errors import UserError
from demo.study import check_study, load_study, validate_rater_id
from demo.synthetic import write_synthetic_study


def test_validate_ok(tmp_path, capsys):
    p = write_synthetic_study(tmp_path)
    assert main(["validate", str(p)]) == 0
    assert "ok (2 systems x 4 prompts = 8 clips" in capsys.readouterr().out


def test_validate_lists_every_problem(tmp_path, capsys):
    p = write_synthetic_study(tmp_path)
    (tmp_path / "clips" / "system-beta" / "p002.wav").unlink()  # missing clip
    (tmp_path / "clips" / "system-alpha" / "p001.wav").write_bytes(b"not audio at all")  # corrupt clip
    raw = yaml.safe_load(p.read_text())
    raw["clip_per_rater"] = 3  # typo'd key
    raw["attention_checks"][0]["expect"] = {"mos_r": 7}
    raw["systems"].append({"name": "system-alpha", "dir": "nowhere"})
    p.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(p)]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    text = "\n".join(out)
    assert "system 'system-beta' has no clip for prompt 'p002'" in text
    assert "p001.wav is not readable audio" in text
    assert "unknown key `clip_per_rater`" in text
    assert "`expect.mos_r` must be ratings 1-5" in text
    assert "system name 'system-alpha' is used twice" in text
    assert "nowhere does not exist" in text
    assert len(out) == 6, out  # one line per problem, nothing else on stdout


def test_malformed_study_file(tmp_path, capsys):
    p = tmp_path / "study.yaml"
    p.write_text("systems: [a, b\nprompts: {")
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mos: error: study file") and "is not valid YAML" in err and len(err.splitlines()) == 1
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    with pytest.raises(UserError, match="must hold a mapping"):
        p.write_text("- just\n- a list\n")
        load_study(p)


def test_clips_per_rater_bounds(tmp_path):
    p = write_synthetic_study(tmp_path, n_prompts=2, clips_per_rater=5)
    study, problems = check_study(p)
    assert study is None and any("only 4 clips" in x for x in problems)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".", "..", "a b", "x" * 65, "é", None, 5])
def test_rater_id_rules(bad):
    with pytest.raises(UserError, match="not allowed"):
        validate_rater_id(bad)


def test_rater_id_ok():
    assert validate_rater_id("PROLIFIC_5f3a.b-9") == "PROLIFIC_5f3a.b-9"


@pytest.mark.parametrize("S,P,cpr", [(2, 4, 4), (2, 4, 3), (3, 5, 4), (4, 6, 6), (4, 6, 5), (3, 3, 9), (5, 7, 3), (5, 7, 7), (3, 8, 24)])
def test_latin_windows_balanced(S, P, cpr):
    N = S * P
    n_raters = 2 * N // cpr + 3
    per_clip = Counter()
    for k in range(n_raters):
        cells = latin_window(S, P, cpr, k, seed=1)
        assert len(set(cells)) == cpr  # no clip twice for one rater
        sys_counts = Counter(s for s, _ in cells)
        # every system floor or ceil of cpr / S times within one rater's window
        assert all(cpr // S <= sys_counts[s] <= -(-cpr // S) for s in range(S)), sys_counts
        if cpr <= P and math.gcd(S, P) == 1:
            assert len({p for _, p in cells}) == cpr  # a prompt at most once
        per_clip.update(cells)
    assert set(per_clip) == {(s, p) for s in range(S) for p in range(P)}
    assert max(per_clip.values()) - min(per_clip.values()) <= 1  # coverage balanced across raters


def test_rater_order_seeded_and_checks_not_first():
    main_items, checks = [f"m{i}" for i in range(6)], ["g", "a"]
    o1 = rater_order(main_items, checks, "r1", seed=3)
    assert o1 == rater_order(main_items, checks, "r1", seed=3)
    assert sorted(o1) == sorted(main_items + checks)
    orders = {tuple(rater_order(main_items, checks, f"r{i}", seed=3)) for i in range(20)}
    assert len(orders) > 10
    assert all(o[0] not in checks for o in orders)


def test_serve_refuses_bad_input(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.yaml")]) == 2
    p = write_synthetic_study(tmp_path)
    (tmp_path / "clips" / "system-alpha" / "p000.wav").unlink()
    assert main(["serve", str(p), "--port", "0"]) == 2
    assert main(["serve", str(p), "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("mos: error: ") for e in err)
    assert "no clip for prompt 'p000'" in err[1] and "--port 70000" in err[2]


def test_validate_comparison_study(tmp_path, capsys):
    p = write_synthetic_study(tmp_path, n_gold=0, n_attention=0, reference=True, extra={
        "access": "signed", "tests": ["cmos", "mushra"], "clips_per_rater": None,
        "cmos": {"type": "ab", "pages_per_rater": 3}, "mushra": {"reference": "clips/reference", "pages_per_rater": 2}})
    assert main(["validate", str(p)]) == 0
    cap = capsys.readouterr()
    assert "no ACR pages; cmos 3 pages per rater; mushra 2 pages per rater; access signed" in cap.out
    assert cap.err == ""  # a study that names its access mode gets no warning
    study = load_study(p)
    assert study.tests == ("cmos", "mushra") and study.cmos.type == "ab"
    assert [a.lowpass_hz for a in study.mushra.anchors] == [3500]
    assert study.mushra.systems == ("system-alpha", "system-beta")
