"""The reproduction report's order claim: clips paired by (seed, prompt id), exact McNemar test, "yes" only at
p < 0.01 over at least 400 pairs, the p value and both Wilson intervals printed (issue 25)."""

import json
import math
from pathlib import Path

import pytest

from conductor.reproduce.config import make_config
from conductor.reproduce.layout import SYSTEMS, Paths
from conductor.reproduce.report import collect, markdown
from eval_gen.stats import wilson_interval


def _binom_two_sided(k: int, n: int) -> float:
    probs = [math.comb(n, i) / 2**n for i in range(n + 1)]
    return min(1.0, sum(p for p in probs if p <= probs[k] * (1 + 1e-12)))


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _fake_run(tmp_path: Path, seeds, outcomes: dict) -> tuple:
    """A run folder with just what ``collect`` reads; ``outcomes[system][seed] = {prompt id: bool}``."""
    cfg = make_config("quick", seeds=tuple(seeds))
    paths = Paths(tmp_path)
    for system in SYSTEMS:
        for s in seeds:
            _write(paths.clap_eval(s, system) / "metrics.json", {})
            per = outcomes[system][s]
            k = sum(per.values())
            _write(paths.scores(s, system) / "scores.json", {"n_gen": len(per), "metrics": {"order_detector": {
                "value": k / len(per), "n": len(per), "correct": k, "skipped": {}, "per_clip": per}}})
    _write(paths.ceiling / "scores.json", {"metrics": {"order_detector": {"value": 0.99, "n": 100, "correct": 99}}})
    return cfg, paths


def _pairs(n_prompts: int, both: int, only_t: int, only_b: int) -> tuple[dict, dict]:
    """Outcomes of ``n_prompts`` prompts: the first ``both`` right for both, then T-only, then baseline-only."""
    t, b = {}, {}
    for i in range(n_prompts):
        pid = f"p{i:04d}"
        t[pid] = i < both + only_t
        b[pid] = i < both or both + only_t <= i < both + only_t + only_b
    return t, b


def test_order_claim_is_paired_by_seed_and_prompt(tmp_path):
    # Two seeds x 250 prompts = 500 pairs. Seed 0: T alone right on 30, baseline alone on 6; seed 1: 12 and 4.
    t0, b0 = _pairs(250, 60, 30, 6)
    t1, b1 = _pairs(250, 50, 12, 4)
    cfg, paths = _fake_run(tmp_path, (0, 1), {"tclap": {0: t0, 1: t1}, "baseline": {0: b0, 1: b1}})
    res = collect(cfg, paths)
    oc = res["order_claim"]
    assert oc["n_pairs"] == 500 and oc["mcnemar"]["only_a"] == 42 and oc["mcnemar"]["only_b"] == 10
    assert oc["p_value"] == pytest.approx(_binom_two_sided(42, 52), rel=1e-9) and oc["p_value"] < 0.01
    assert oc["verdict"] == "yes" and res["checks"]["audioldm_t_above_audioldm_l_order_detector"] is True
    assert oc["a"]["correct"] == 90 + 62 and oc["b"]["correct"] == 66 + 54
    assert oc["a"]["wilson"] == pytest.approx(list(wilson_interval(152, 500)))
    md = markdown(res, {})
    line = next(ln for ln in md.splitlines() if ln.startswith("- AudioLDM_T above AudioLDM_L"))
    assert "**yes**" in line and f"p = {oc['p_value']:.3g}" in line and "over 500 pairs" in line
    lo, hi = oc["b"]["wilson"]
    assert f"AudioLDM_L 24.00% (120/500; 95% Wilson {100 * lo:.2f}–{100 * hi:.2f}%)" in line
    assert "ceiling on the real held-out clips 99.00% (99/100;" in line
    # every clip of one system found its pair in the other
    assert oc["unpaired"] == {"only_in_a": 0, "only_in_b": 0}


def test_order_claim_not_shown_with_too_few_pairs_or_weak_evidence(tmp_path):
    # 100 prompts, one seed: a big effect, but fewer than 400 pairs.
    t, b = _pairs(100, 10, 40, 2)
    cfg, paths = _fake_run(tmp_path / "few", (0,), {"tclap": {0: t}, "baseline": {0: b}})
    res = collect(cfg, paths)
    assert res["order_claim"]["verdict"] == "not shown" and res["checks"]["audioldm_t_above_audioldm_l_order_detector"] is False
    line = next(ln for ln in markdown(res, {}).splitlines() if ln.startswith("- AudioLDM_T above"))
    assert "**not shown** (too few pairs (100 < 400))" in line and "p = " in line
    # 400 pairs, means apart (T 28% vs baseline 25%) but p far above 0.01: not shown.
    t, b = _pairs(400, 80, 32, 20)
    cfg, paths = _fake_run(tmp_path / "weak", (0,), {"tclap": {0: t}, "baseline": {0: b}})
    oc = collect(cfg, paths)["order_claim"]
    assert oc["verdict"] == "not shown" and "not below 0.01" in oc["reason"]
    assert oc["p_value"] == pytest.approx(_binom_two_sided(32, 52), rel=1e-9)


def test_order_claim_without_per_clip_outcomes_is_not_measured(tmp_path):
    t, b = _pairs(10, 5, 3, 1)
    cfg, paths = _fake_run(tmp_path, (0,), {"tclap": {0: t}, "baseline": {0: b}})
    for system in SYSTEMS:  # scores written before per-clip outcomes existed
        f = paths.scores(0, system) / "scores.json"
        sc = json.loads(f.read_text())
        del sc["metrics"]["order_detector"]["per_clip"]
        f.write_text(json.dumps(sc))
    res = collect(cfg, paths)
    assert res["checks"]["audioldm_t_above_audioldm_l_order_detector"] is None
    assert "not measured (no per-clip outcomes" in markdown(res, {})
