"""Recipes: one-command pipelines that produce the project's shipped artefacts."""
