"""The T-CLAP trainer (``tclap train``): presets, mixed positive/temporal batches, accelerate loop.

:mod:`~tclap.train.config` holds the presets as dataclasses, :mod:`~tclap.train.sampler` the
deterministic batch mixer, :mod:`~tclap.train.data` the manifests-to-tensors step (with a feature cache)
and :mod:`~tclap.train.trainer` the loop itself.
"""
