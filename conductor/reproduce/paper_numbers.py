"""The paper's reported numbers, shown beside ours in the report.

Source: Yuan et al., "T-CLAP: Temporal-enhanced contrastive language-audio pretraining" (the text in
``/work/shared/paper/t-clap-paper.txt``), Tables 1-4. ``std`` is the paper's ± over three seeds where it
gives one, else None. Only the rows our miniature has an analogue for are kept: CLAP_l (LAION-CLAP, the
model T-CLAP was fine-tuned from; Table 3 prints it as "CLAP_t", a typo for CLAP_l) vs T-CLAP, and
AudioLDM_L vs AudioLDM_T. Percentages are in percent; KL and FAD as printed.
"""

from __future__ import annotations


def _v(mean: float, std: float | None = None) -> dict:
    return {"mean": mean, "std": std}


PAPER = {
    # Table 1: retrieval on the AudioCaps test set (R@k in %).
    "retrieval_audiocaps": {
        "baseline": {"r1_t2a": _v(34.2), "r5_t2a": _v(71.1), "r10_t2a": _v(84.1),
                     "r1_a2t": _v(43.1), "r5_a2t": _v(79.5), "r10_a2t": _v(90.1)},
        "tclap": {"r1_t2a": _v(39.7), "r5_t2a": _v(74.6), "r10_t2a": _v(86.9),
                  "r1_a2t": _v(49.8), "r5_a2t": _v(82.5), "r10_a2t": _v(91.9)},
    },
    # Table 1: retrieval on the Clotho test set (kept for the record; our analogue is one held-out set).
    "retrieval_clotho": {
        "baseline": {"r1_t2a": _v(15.3), "r5_t2a": _v(38.4), "r10_t2a": _v(51.2),
                     "r1_a2t": _v(20.8), "r5_a2t": _v(51.2), "r10_a2t": _v(60.0)},
        "tclap": {"r1_t2a": _v(17.3), "r5_t2a": _v(39.9), "r10_t2a": _v(53.6),
                  "r1_a2t": _v(21.8), "r5_a2t": _v(44.9), "r10_a2t": _v(57.4)},
    },
    # Table 2: zero-shot top-1 on ESC-50 with "A sound of {label}" (%).
    "zero_shot_esc50": {"baseline": {"zero_shot_top1": _v(91.0)}, "tclap": {"zero_shot_top1": _v(96.5, 0.25)}},
    # Table 3: T-Classify (%).
    "t_classify": {
        "baseline": {"t_classify_t2a": _v(56.2), "t_classify_a2t": _v(53.2)},
        "tclap": {"t_classify_t2a": _v(87.2, 0.47), "t_classify_a2t": _v(72.0, 1.35)},
    },
    # Table 4: AudioLDM conditioned on each CLAP.
    "audioldm": {
        "baseline": {"kl_softmax": _v(2.2, 0.13), "fad": _v(2.5, 0.24), "mos_r": _v(3.5), "mos_t": _v(2.8)},
        "tclap": {"kl_softmax": _v(2.3, 0.13), "fad": _v(1.8, 0.08), "mos_r": _v(3.7), "mos_t": _v(3.8)},
    },
}
