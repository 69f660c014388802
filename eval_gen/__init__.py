"""eval_gen: score generated audio (FAD, FAD∞, KAD, KL, CLAP score, temporal-order accuracy).

May import :mod:`tclap`; never ``audioldm_cond`` or ``demo``. Nothing downloads at import time.
"""

__version__ = "0.1.0"
