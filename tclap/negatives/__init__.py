"""Negative captions for free-form captions: the same events in another order.

- :mod:`tclap.negatives.rule`: a clause/connector reorderer that needs nothing.
- :mod:`tclap.negatives.llm`: an OpenAI-compatible chat endpoint or a local transformers model, with the
  prompt in a file the user can replace (``default_prompt.txt``).
- :mod:`tclap.negatives.validate`: every output is checked (same events, another order, not a copy).
- :mod:`tclap.negatives.runner`: the cached, resumable job behind ``tclap negatives``.
"""
