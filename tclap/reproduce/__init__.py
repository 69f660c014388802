"""``tclap reproduce``: the paper's whole pipeline (data -> CLAPs -> AudioLDMs -> scores -> MOS study -> report).

Modules: :mod:`~tclap.reproduce.config` (presets as dataclasses), :mod:`~tclap.reproduce.pipeline` (the
resumable stage runner), :mod:`~tclap.reproduce.stages` (what each stage of the tiny preset does),
:mod:`~tclap.reproduce.paper` (the paper's numbers and the real-scale plan) and
:mod:`~tclap.reproduce.report` (``report.md``, figures, ``results.json``).
"""
