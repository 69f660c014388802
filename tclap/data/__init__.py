"""Data for T-CLAP: clip banks, temporal mix-ups, order captions, manifests and WebDataset shards.

Submodules are imported on use (``from tclap.data.mixup import build_builtin_mixups``) so that importing
the package stays cheap.
"""
