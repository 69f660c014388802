"""The reproduction's report: ``OUT/report.md``, figures under ``OUT/report/figures/`` and ``OUT/results.json``.

Every number in a table of ``report.md`` is ``fmt(x)`` of a number stored in ``results.json`` (the test
checks it), so the JSON is the report's single source. Our numbers are the mean ± std (sample std,
``ddof=1``; 0 for one seed) over the seeds; the paper's numbers are printed beside them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from basekit.atomic import atomic_write_text
from eval_gen.stats import paired_order_claim, wilson_interval
from conductor.reproduce.layout import CLAP_LABELS, SYSTEMS, read_jsonl
from conductor.reproduce.paper_numbers import PAPER

NA = "–"
# The order claim (AudioLDM_T above AudioLDM_L): exact McNemar test on clips paired by (seed, prompt id).
ORDER_CLAIM_ALPHA = 0.01
ORDER_CLAIM_MIN_PAIRS = 400
# The retrieval claim (T-CLAP keeps the baseline's retrieval): R@1 both ways at most this many points below the
# baseline's (means over the seeds), measured over at least this many held-out captions.
RETRIEVAL_MAX_DROP = 2.0
RETRIEVAL_MIN_CAPTIONS = 1000
PAPER_LABELS = {"baseline": "CLAP_l", "tclap": "T-CLAP"}


def fmt(x: float | None) -> str:
    """The one number format of the report's tables."""
    return NA if x is None else f"{x:.2f}"


def _cell(v: dict | None) -> str:
    if v is None or v.get("mean") is None:
        return NA
    return fmt(v["mean"]) if v.get("std") is None else f"{fmt(v['mean'])} ± {fmt(v['std'])}"


def aggregate(per_seed: dict[int, float | None]) -> dict:
    """``{seed: value}`` -> ``{"mean", "std", "n_seeds", "per_seed", "missing_seeds"}`` (missing values counted)."""
    vals = [v for v in per_seed.values() if v is not None and math.isfinite(v)]
    missing = [s for s, v in per_seed.items() if v is None or not math.isfinite(v)]
    mean = float(np.mean(vals)) if vals else None
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else (0.0 if vals else None)
    return {"mean": mean, "std": std, "n_seeds": len(vals), "per_seed": {str(s): v for s, v in per_seed.items()},
            "missing_seeds": missing}


def _metric(scores: dict, name: str, scale: float = 1.0) -> float | None:
    m = scores.get("metrics", {}).get(name)
    v = m.get("value") if isinstance(m, dict) else None
    return None if v is None else float(v) * scale


# ------------------------------------------------------------------------------------------------ collect
CLAP_KEYS = ("r1_t2a", "r5_t2a", "r10_t2a", "r1_a2t", "r5_a2t", "r10_a2t", "map10_t2a", "map10_a2t",
             "zero_shot_top1", "t_classify_t2a", "t_classify_a2t", "t_classify_t2a_audio_blind")
# eval-gen metric name -> (our key, scale): order accuracies in percent like T-Classify.
GEN_KEYS = {"kl_softmax": ("kl_softmax", 1.0), "fad": ("fad", 1.0), "kad": ("kad", 1.0),
            "clap_score": ("clap_score", 1.0), "order_detector": ("order_detector", 100.0),
            "order_clap": ("order_clap", 100.0)}


def _probe(out: Path) -> float | None:
    """The UNet's order preference (%) from ``audioldm-cond probe-order``'s output, or None (not run: a run
    scored before the probe existed)."""
    f = out / "order_probe.json"
    if not f.exists():
        return None
    res = json.loads(f.read_text())
    return float(next(iter(res.values()))["order_preference"]) if res else None


def retrieval_claim(clap: dict, captions: dict[str, int | None]) -> dict:
    """Does T-CLAP keep the baseline's retrieval? R@1 text-to-audio and audio-to-text (means over the seeds) each at
    most :data:`RETRIEVAL_MAX_DROP` points below the baseline's, over at least :data:`RETRIEVAL_MIN_CAPTIONS` held-out
    captions in every evaluation (``captions``: ``"seed<S>/<system>" -> count``).

    Returns ``{"verdict": "yes" | "no" | "not shown" | "not measured", "reason", "differences": {key: T-CLAP minus
    baseline, points}, "captions", "max_drop", "min_captions"}``.
    """
    diffs = {}
    for k in ("r1_t2a", "r1_a2t"):
        a, b = clap["tclap"][k]["mean"], clap["baseline"][k]["mean"]
        diffs[k] = None if a is None or b is None else a - b
    counts = [c for c in captions.values() if c is not None]
    n = min(counts) if counts and len(counts) == len(captions) else None
    out = {"differences": diffs, "captions": n, "max_drop": RETRIEVAL_MAX_DROP, "min_captions": RETRIEVAL_MIN_CAPTIONS}
    if any(v is None for v in diffs.values()) or n is None:
        return {**out, "verdict": "not measured", "reason": "R@1 or its caption count is missing"}
    if n < RETRIEVAL_MIN_CAPTIONS:
        return {**out, "verdict": "not shown", "reason": f"too few captions ({n} < {RETRIEVAL_MIN_CAPTIONS})"}
    worst = min(diffs.values())
    if worst >= -RETRIEVAL_MAX_DROP:
        return {**out, "verdict": "yes", "reason": f"R@1 at most {RETRIEVAL_MAX_DROP:g} points below over {n} captions"}
    return {**out, "verdict": "no", "reason": f"R@1 {-worst:.2f} points below (allowed {RETRIEVAL_MAX_DROP:g})"}


def collect(cfg, paths) -> dict:
    """Read every stage's outputs into the ``results.json`` structure."""
    from conductor.reproduce.pipeline import read_done  # noqa: PLC0415

    seeds = list(cfg.seeds)
    clap: dict = {}
    captions: dict = {}  # "seed<S>/<system>" -> retrieval captions of that evaluation
    for system in SYSTEMS:
        per = {k: {} for k in CLAP_KEYS}
        for s in seeds:
            m = json.loads((paths.clap_eval(s, system) / "metrics.json").read_text())
            flat = m.get("metrics", m)
            for k in CLAP_KEYS:
                v = flat.get(k)
                per[k][s] = float(v) if isinstance(v, (int, float)) else None
            n_cap = (m.get("counts") or {}).get("retrieval_captions")
            captions[f"seed{s}/{system}"] = int(n_cap) if isinstance(n_cap, (int, float)) else None
        clap[system] = {k: aggregate(v) for k, v in per.items()}
    gen: dict = {}
    counts: dict = {}
    # Per-clip order outcomes keyed "seed<S>/<prompt id>": both systems generate the same prompts with the same
    # sampler seed, so the order claim is a paired test on these (eval_gen.stats.paired_order_claim).
    outcomes: dict = {system: {} for system in SYSTEMS}
    for system in SYSTEMS:
        per = {k: {} for k, _ in GEN_KEYS.values()}
        for s in seeds:
            sc = json.loads((paths.scores(s, system) / "scores.json").read_text())
            for name, ok in (sc["metrics"].get("order_detector", {}).get("per_clip") or {}).items():
                outcomes[system][f"seed{s}/{name}"] = bool(ok)
            counts[f"seed{s}/{system}"] = {"n_gen": sc.get("n_gen"), "n_ref": sc.get("n_ref"),
                                           "order_detector_n": sc["metrics"].get("order_detector", {}).get("n"),
                                           "skipped": sc.get("skipped", {}), "silent": sc.get("silent", {}),
                                           "silence_threshold_dbfs": sc.get("silence", {}).get("threshold_dbfs")}
            for name, (key, scale) in GEN_KEYS.items():
                per[key][s] = _metric(sc, name, scale)
        per["unet_order_preference"] = {s: _probe(paths.probe(s, system)) for s in seeds}
        gen[system] = {k: aggregate(v) for k, v in per.items()}
    ceiling_scores = json.loads((paths.ceiling / "scores.json").read_text())
    ceiling = {"order_detector": _metric(ceiling_scores, "order_detector", 100.0),
               "order_clap": _metric(ceiling_scores, "order_clap", 100.0),
               "n": ceiling_scores["metrics"].get("order_detector", {}).get("n"),
               "correct": ceiling_scores["metrics"].get("order_detector", {}).get("correct")}
    if ceiling["n"]:
        ceiling["wilson"] = [100 * v for v in wilson_interval(int(ceiling["correct"]), int(ceiling["n"]))]
    order_claim = paired_order_claim(outcomes["tclap"], outcomes["baseline"], alpha=ORDER_CLAIM_ALPHA,
                                     min_pairs=ORDER_CLAIM_MIN_PAIRS)

    def above(table: dict, key: str) -> bool | None:
        a, b = table["tclap"][key]["mean"], table["baseline"][key]["mean"]
        return None if a is None or b is None else bool(a > b)

    retrieval = retrieval_claim(clap, captions)
    checks = {
        "tclap_above_baseline_t_classify_t2a": above(clap, "t_classify_t2a"),
        "tclap_above_baseline_t_classify_a2t": above(clap, "t_classify_a2t"),
        # "yes" only when McNemar's exact test on the paired clips says so (not a comparison of two means).
        "audioldm_t_above_audioldm_l_order_detector": (order_claim["verdict"] == "yes") if order_claim["n_pairs"]
        else None,
        # "yes" only over enough captions; None when not measured or not shown
        "tclap_retrieval_r1_within_max_drop": {"yes": True, "no": False}.get(retrieval["verdict"]),
    }
    timing = {}
    for name in ("data", "clap", "clap_eval", "ldm", "generate", "score", "study"):
        done = read_done(paths.out, name)
        timing[name] = float(done["seconds"]) if done else None
    return {"preset": cfg.preset, "seeds": seeds, "config": cfg.to_dict(), "clap": clap, "generation": gen,
            "detector_ceiling": ceiling, "generation_counts": counts, "checks": checks, "order_claim": order_claim,
            "retrieval_claim": retrieval, "retrieval_captions": captions, "stage_seconds_last_run": timing,
            "paper": PAPER,
            "study": str(paths.study), "prompts": str(paths.prompts)}


# ------------------------------------------------------------------------------------------------ markdown
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _rows(res: dict, section: str, paper_section: str, keys: Sequence[str], names: dict[str, str]) -> list[list[str]]:
    rows = []
    for system in names:
        paper = PAPER[paper_section][system]
        rows.append([f"{PAPER_LABELS[system]} (paper)"] + [_cell(paper.get(k)) for k in keys])
    for system, label in names.items():
        rows.append([f"{label} (ours)"] + [_cell(res[section][system][k]) for k in keys])
    return rows


def _yes(v: bool | None) -> str:
    return "not measured" if v is None else ("**yes**" if v else "**no**")


def _silence_notes(res: dict) -> list[str]:
    """A warning line per scored folder with silent or near-silent generated clips (judged by ``eval-gen score`` on
    the peak before any gain): their FAD, KL and order numbers describe noise, not sound events."""
    lines = []
    for run, v in res.get("generation_counts", {}).items():
        n = len(v.get("silent", {}).get("gen", []))
        if n:
            thr = v.get("silence_threshold_dbfs")
            lines.append(f"> **Silent output**: {n} of {v.get('n_gen')} generated clips of `{run}` are silent or "
                         f"near-silent (peak below {thr if thr is not None else -60:g} dBFS before any gain); the "
                         "scores of that system describe near-silence, not sound events.")
    return lines + [""] if lines else []


def _pct_ci(side: dict) -> str:
    lo, hi = side["wilson"]
    return (f"{fmt(100 * side['accuracy'])}% ({side['correct']}/{side['n']}; 95% Wilson {fmt(100 * lo)}–"
            f"{fmt(100 * hi)}%)") if side["n"] else NA


def _order_claim(oc: dict | None, ceiling: dict) -> str:
    """The order claim's verdict with its evidence: the exact McNemar p, the pair counts and both intervals."""
    if not oc or not oc.get("n_pairs"):
        return "not measured (no per-clip outcomes in the scores: re-run with --force-stage score)"
    m = oc["mcnemar"]
    verdict = "**yes**" if oc["verdict"] == "yes" else f"**not shown** ({oc['reason']})"
    line = (f"{verdict}. Exact McNemar test, two-sided, over {oc['n_pairs']} pairs: p = {oc['p_value']:.3g} "
            f"(needs p < {oc['alpha']:g} over at least {oc['min_pairs']} pairs); AudioLDM_T right and AudioLDM_L "
            f"wrong on {m['only_a']}, the reverse on {m['only_b']}. AudioLDM_T {_pct_ci(oc['a'])}, AudioLDM_L "
            f"{_pct_ci(oc['b'])}")
    if ceiling.get("wilson"):
        lo, hi = ceiling["wilson"]
        line += (f"; the judge's ceiling on the real held-out clips {fmt(ceiling['order_detector'])}% "
                 f"({ceiling['correct']}/{ceiling['n']}; {fmt(lo)}–{fmt(hi)}%)")
    unpaired = oc.get("unpaired", {})
    if unpaired.get("only_in_a") or unpaired.get("only_in_b"):
        line += f"; unpaired clips left out: {unpaired['only_in_a']} (AudioLDM_T), {unpaired['only_in_b']} (AudioLDM_L)"
    return line + "."


def _retrieval_claim(rc: dict | None) -> str:
    """The retrieval claim's verdict with the R@1 differences and the caption count."""
    if not rc or rc["verdict"] == "not measured":
        return "not measured" + (f" ({rc['reason']})" if rc else "")
    d = rc["differences"]
    evidence = (f"T-CLAP minus baseline R@1: text-to-audio {d['r1_t2a']:+.2f}, audio-to-text {d['r1_a2t']:+.2f} points "
                f"over {rc['captions']} held-out captions (needs at most {rc['max_drop']:g} points below over at least "
                f"{rc['min_captions']} captions)")
    verdict = {"yes": "**yes**", "no": "**no**"}.get(rc["verdict"], f"**not shown** ({rc['reason']})")
    return f"{verdict}. {evidence}."


def markdown(res: dict, figures: dict[str, list[str]]) -> str:

    ldm_names = {k: v[1] for k, v in SYSTEMS.items()}
    seeds = ", ".join(map(str, res["seeds"]))
    smoke = res["preset"] == "quick"
    L = [f"# T-CLAP reproduction ({res['preset']} preset)" + (": a smoke run, its numbers mean nothing" if smoke else ""),
         ""]
    if smoke:
        L += ["> **Smoke run (`--preset quick`)**: every model here (the CLAPs `smoke-baseline` and `smoke-tclap`, "
              "the AudioLDMs on them) trained for a few optimiser steps only, to check that every stage runs end to "
              "end. Its numbers mean nothing about the method and its clips are not meant to sound like anything. For the "
              "miniature reproduction run `tclap reproduce --preset tiny`.", ""]
    L += [f"Seeds: {seeds}. Our numbers are the mean ± sample std over the seeds (± 0.00 for one seed); the "
          "paper's are its reported values (± where it gives one, over three seeds). Every number here is in "
          "`results.json`. Our data is the built-in procedural sound-event bank (held-out instances for every "
          "test clip), so the tables are analogues of the paper's, not the same benchmarks.", ""]
    L += _silence_notes(res)
    c = res["checks"]
    L += ["## Claims", "",
          f"- T-CLAP above the baseline on T-Classify text-to-audio: {_yes(c['tclap_above_baseline_t_classify_t2a'])}",
          f"- T-CLAP above the baseline on T-Classify audio-to-text: {_yes(c['tclap_above_baseline_t_classify_a2t'])}",
          f"- T-CLAP keeps the baseline's retrieval: {_retrieval_claim(res.get('retrieval_claim'))}",
          f"- AudioLDM_T above AudioLDM_L on temporal-order accuracy (event detector, clips paired by seed and "
          f"prompt): {_order_claim(res.get('order_claim'), res.get('detector_ceiling', {}))}", ""]
    keys = ("r1_t2a", "r5_t2a", "r10_t2a", "r1_a2t", "r5_a2t", "r10_a2t")
    n_cap = (res.get("retrieval_claim") or {}).get("captions")
    L += ["## Table 1 analogue: retrieval (%)", "",
          "Ours: built-in held-out two-event mix-ups, one caption per clip"
          + (f" ({n_cap} captions)" if n_cap else "") + ". Paper: AudioCaps test set "
          "(CLAP_l = LAION-CLAP, the model T-CLAP was fine-tuned from).", ""]
    L += _table(["model", "T2A R@1", "T2A R@5", "T2A R@10", "A2T R@1", "A2T R@5", "A2T R@10"],
                _rows(res, "clap", "retrieval_audiocaps", keys, CLAP_LABELS)) + [""]
    L += ["## Table 2 analogue: zero-shot classification (%)", "",
          'Top-1 with the prompt "A sound of {label}". Ours: single-event renders of held-out instances of every '
          "built-in class. Paper: ESC-50.", ""]
    L += _table(["model", "zero-shot top-1"],
                _rows(res, "clap", "zero_shot_esc50", ("zero_shot_top1",), CLAP_LABELS)) + [""]
    L += ["## Table 3 analogue: T-Classify (%)", "",
          "Share of held-out clips whose positive caption beats the order-swapped one (T2A), and of captions whose "
          "clip beats the order-swapped clip (A2T); ties count as wrong. The audio-blind control scores T2A from "
          "the text embeddings alone (no audio): a model that wins there has learned a caption template, not "
          "the order it hears. The paper has no audio-blind column.", ""]
    tk = ("t_classify_t2a", "t_classify_a2t", "t_classify_t2a_audio_blind")
    rows = _rows(res, "clap", "t_classify", tk, CLAP_LABELS)
    L += _table(["model", "T2A", "A2T", "T2A audio-blind control"], rows) + [""]
    gk = ("kl_softmax", "fad", "kad", "clap_score", "order_detector", "order_clap", "unet_order_preference")
    n_prompts = res.get("config", {}).get("data", {}).get("n_heldout")
    n_study = res.get("config", {}).get("study", {}).get("max_prompts")
    L += ["## Table 4 analogue: AudioLDM conditioned on each CLAP", "",
          "Held-out ordered prompts" + (f" ({n_prompts} per seed)" if n_prompts else "") + ", one clip per prompt "
          "and seed, the same sampler seed for both systems. KL: softmax KL(ref‖gen) of the built-in event "
          "classifier, paired by prompt; FAD / KAD on mel statistics (independent of both CLAPs); CLAP score and "
          "order accuracy (CLAP) by the seed's T-CLAP; order accuracy (detector): the frame-level event detector "
          "finds the prompted events in the prompted order (%). UNet order preference: on the real held-out "
          "clips (no sampling), the share whose denoising error under their own caption is lower than under the "
          "order-swapped caption (`audioldm-cond probe-order`; 50% = the UNet ignores the order it is given). "
          "MOS_r / MOS_t: serve the study (below). "
          "Paper: AudioCaps, CLAP-LAION (AudioLDM_L) vs T-CLAP (AudioLDM_T).", ""]
    rows = []
    for system, label in ldm_names.items():
        p = PAPER["audioldm"][system]
        rows.append([f"{label} (paper)", _cell(p["kl_softmax"]), _cell(p["fad"]), NA, NA, NA, NA, NA,
                     _cell(p["mos_r"]), _cell(p["mos_t"])])
    for system, label in ldm_names.items():
        g = res["generation"][system]
        rows.append([f"{label} (ours)"] + [_cell(g[k]) for k in gk] + [NA, NA])
    ceil = res["detector_ceiling"]
    rows.append(["real held-out clips (detector ceiling)", NA, NA, NA, NA, fmt(ceil["order_detector"]),
                 fmt(ceil["order_clap"]), NA, NA, NA])
    L += _table(["model", "KL ↓", "FAD ↓", "KAD ↓", "CLAP score ↑", "order acc. detector ↑", "order acc. CLAP ↑",
                 "UNet order preference", "MOS_r ↑", "MOS_t ↑"], rows) + [""]
    skipped = {k: v["skipped"] for k, v in res["generation_counts"].items() if v.get("skipped")}
    if skipped:
        L += [f"Skipped while scoring (counted, not dropped): `{json.dumps(skipped)}`", ""]
    L += ["## Figures", ""]
    for title, files in figures.items():
        L += [f"### {title}", ""] + [f"![{Path(f).stem}]({f})" for f in files] + [""]
    L += ["## Listening test", "",
          f"The study file `{res['study']}` holds both systems' clips of the first seed"
          + (f" for the first {min(n_study, n_prompts)} held-out prompts" if n_study and n_prompts else "")
          + f" (checked with `mos validate`). Run `mos serve {res['study']}`, then "
          "`mos report --db <study>.sqlite --out DIR` for MOS_r and MOS_t with confidence intervals.", ""]
    L += ["## Stage times of the last run (s)", ""]
    L += _table(["stage", "seconds"], [[k, fmt(v)] for k, v in res["stage_seconds_last_run"].items()]) + [""]
    L += ["A stage skipped as up to date keeps the time of the run that produced it.", ""]
    return "\n".join(L)


# ------------------------------------------------------------------------------------------------ figures
def _figures(cfg, paths, res: dict, fig_dir: Path, n_spectrograms: int = 3) -> dict[str, list[str]]:
    from basekit.audio import load_audio  # noqa: PLC0415
    from audioldm_cond.mel import AudioLDMMelFrontEnd  # noqa: PLC0415
    from basekit.plotting import plot_bars, plot_histogram, plot_spectrogram  # noqa: PLC0415

    import torch  # noqa: PLC0415

    rel = lambda p: str(Path(p).relative_to(paths.out))  # noqa: E731
    out: dict[str, list[str]] = {}
    seed = cfg.seeds[0]
    fe = AudioLDMMelFrontEnd()
    specs = []
    for p in read_jsonl(paths.prompts)[:n_spectrograms]:
        sources = [("reference", paths.references / f"{p['id']}.wav")]
        sources += [(SYSTEMS[m][1], paths.generated(seed, m) / f"{p['id']}.wav") for m in SYSTEMS]
        for label, wav_path in sources:
            wav = load_audio(wav_path, sr=fe.sample_rate)
            with torch.no_grad():
                mel = fe(torch.from_numpy(wav)[None])[0, 0]  # [frames, 64]
            duration = mel.shape[0] * fe.hop_length / fe.sample_rate
            # The prompt's intended event spans (those of its real held-out clip), drawn on every panel.
            events = [e for e in p.get("events", []) if e["onset"] < duration]
            specs.append(plot_spectrogram(mel, fe.hop_length, fe.sample_rate, title=f"{label}: {p['prompt']}",
                                          events=events, path=fig_dir / f"spec_{p['id']}_{label}.png"))
    out["Spectrograms of held-out ordered prompts (intended event spans marked)"] = [rel(s) for s in specs]
    labels, vals, errs = [], [], []
    for key, name in (("t_classify_t2a", "T2A"), ("t_classify_a2t", "A2T"), ("t_classify_t2a_audio_blind", "T2A blind")):
        for m in SYSTEMS:
            v = res["clap"][m][key]
            if v["mean"] is not None:
                labels.append(f"{CLAP_LABELS[m]} {name}")
                vals.append(v["mean"])
                errs.append(v["std"])
    spread = len(cfg.seeds) > 1  # one seed has no spread to draw
    bars = plot_bars(labels, vals, errs if spread else None,
                     title="T-Classify (mean ± std over seeds)" if spread else f"T-Classify (seed {cfg.seeds[0]})",
                     ylabel="T-Classify accuracy (%) ↑", ylim=(0, 100),
                     path=fig_dir / "t_classify.png")
    out["T-Classify"] = [rel(bars)]
    hists = []
    for m in SYSTEMS:
        sims = json.loads((paths.clap_eval(seed, m) / "similarities.json").read_text())
        hists.append(plot_histogram({"positive caption": sims["positive"], "negative (order-swapped) caption":
                                     sims["negative"]}, bins=30, title=f"{CLAP_LABELS[m]}, seed {seed}",
                                    xlabel="cosine similarity to the clip", path=fig_dir / f"similarity_{m}.png"))
    out["Similarity of held-out clips to their positive vs negative captions"] = [rel(h) for h in hists]
    labels, vals, errs = [], [], []
    for m in SYSTEMS:
        v = res["generation"][m]["order_detector"]
        if v["mean"] is not None:
            labels.append(SYSTEMS[m][1])
            vals.append(v["mean"])
            errs.append(v["std"])
    if res["detector_ceiling"]["order_detector"] is not None:
        labels.append("real clips (ceiling)")
        vals.append(res["detector_ceiling"]["order_detector"])
        errs.append(0.0)
    if labels:
        out["Temporal-order accuracy (event detector)"] = [rel(plot_bars(
            labels, vals, errs if spread else None, title="Order accuracy of generated clips", ylabel="order accuracy (%) ↑",
            ylim=(0, 100), path=fig_dir / "order_accuracy.png"))]
    return out


def write_report(cfg, paths, sdir: Path) -> dict:
    """Collect the results, draw the figures, write ``OUT/results.json`` and ``OUT/report.md`` (atomically).

    The stage-times table ends with the report stage itself: its time up to writing the files (its ``DONE.json``
    is written after it returns)."""
    import time  # noqa: PLC0415

    t0 = time.time()
    res = collect(cfg, paths)
    figures = _figures(cfg, paths, res, sdir / "figures")
    res["stage_seconds_last_run"]["report"] = round(time.time() - t0, 1)
    res["figures"] = figures
    atomic_write_text(paths.out / "results.json", json.dumps(res, indent=2, default=_json_default))
    atomic_write_text(paths.out / "report.md", markdown(res, figures))
    return {"report": str(paths.out / "report.md"), "results": str(paths.out / "results.json"),
            "checks": res["checks"]}


def _json_default(o: Any):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-able: {type(o).__name__}")
