"""T-Classify, retrieval and zero-shot evaluation of CLAP models.

:mod:`tclap.evaluation.metrics` holds pure functions on embeddings (numpy, no model);
:mod:`tclap.evaluation.runner` embeds a manifest with a model (batched, cached by content hash) and
computes every metric; :mod:`tclap.evaluation.report` writes ``metrics.json`` and ``metrics.md``.
"""
