"""The layer above the four packages: the pipelines and recipes that drive them all.

* :mod:`conductor.reproduce`: ``tclap reproduce``, the paper's pipeline end to end in resumable stages.
* :mod:`conductor.recipes.clap` / :mod:`conductor.recipes.audioldm`: the recipes that made the shipped tiny
  CLAPs and AudioLDMs.
* :mod:`conductor.cli`: the ``tclap`` console script: ``tclap``'s own commands plus ``reproduce``.

It may import ``basekit``, ``tclap``, ``eval_gen``, ``audioldm_cond`` and ``demo``; none of them imports it.
"""
