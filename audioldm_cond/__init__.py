"""audioldm_cond: CLAP / T-CLAP as AudioLDM's conditioning encoder (components, trainer, pipeline).

May import :mod:`tclap` and :mod:`eval_gen`. Nothing downloads at import time.
"""

__version__ = "0.1.0"
