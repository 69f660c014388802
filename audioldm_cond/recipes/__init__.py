"""Recipes that produce the models shipped in the package (one command each)."""
