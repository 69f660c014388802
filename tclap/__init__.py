"""T-CLAP: temporal-enhanced contrastive language-audio pretraining.

The base layer of the toolkit: audio I/O and front ends, the built-in sound-event bank, temporal
mix-ups and negative captions, CLAP models, the L_c + λ·L_t losses, the trainer, evaluation and export.
Nothing here imports ``eval_gen``, ``audioldm_cond`` or ``demo``, and nothing downloads at import time.
"""

__version__ = "0.1.0"
