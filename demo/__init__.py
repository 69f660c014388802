"""demo: a browser MOS listening test (MOS_r overall quality, MOS_t temporal accuracy) that loses no rating.

Stands alone: imports none of tclap / eval_gen / audioldm_cond. Gradio is imported only by the app.
"""

__version__ = "0.1.0"
