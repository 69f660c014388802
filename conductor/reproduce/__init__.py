"""``tclap reproduce``: the paper's whole pipeline (data -> CLAPs -> AudioLDMs -> scores -> MOS study -> report).

Modules: :mod:`~conductor.reproduce.config` (presets as dataclasses), :mod:`~conductor.reproduce.pipeline` (the
resumable stage runner), :mod:`~conductor.reproduce.stages` (what each stage of the tiny preset does),
:mod:`~conductor.reproduce.paper` (the paper's numbers and the real-scale plan) and
:mod:`~conductor.reproduce.report` (``report.md``, figures, ``results.json``).
"""
