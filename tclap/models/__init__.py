"""CLAP models: named configs, one factory for every source, and the :class:`ClapBundle` wrapper.

>>> bundle = load_clap("tiny")                 # doctest: +SKIP
>>> bundle.embed_text(["a beep followed by a knock"]).shape   # doctest: +SKIP
torch.Size([1, 128])

Heavy imports (transformers) happen when a model is built, not when this package is imported.
"""

from tclap.models.bundle import ClapBundle
from tclap.models.configs import (
    CONFIG_NAMES,
    AudioTowerConfig,
    ClapArchConfig,
    FrontEndConfig,
    TextTowerConfig,
    get_config,
)
from tclap.models.factory import ASSETS_DIR, SHIPPED_MODELS, from_config, load_clap
from tclap.models.frontends import TCLAP_CONFIG_FILE

__all__ = [
    "ASSETS_DIR", "AudioTowerConfig", "CONFIG_NAMES", "ClapArchConfig", "ClapBundle", "FrontEndConfig",
    "SHIPPED_MODELS", "TCLAP_CONFIG_FILE", "TextTowerConfig", "from_config", "get_config", "load_clap",
]
