"""Recipes that produce the models shipped in the package, one command each.

``python -m conductor.recipes.clap --out DIR`` (the tiny CLAPs) and ``python -m conductor.recipes.audioldm --out DIR``
(the tiny AudioLDMs conditioned on them).
"""
