"""Training of AudioLDM models conditioned on CLAP / T-CLAP (``audioldm-cond train``).

``config`` holds the dataclasses, ``data`` the manifests, caches and batch order, ``trainer`` the
accelerate loop of the ``vae`` and ``ldm`` stages, ``validation`` the validation pass and ``cli`` the
command. Nothing heavy is imported here.
"""
