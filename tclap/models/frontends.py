"""The bridge between a model's mel front-end settings and the objects that use them.

A :class:`~tclap.models.configs.FrontEndConfig` becomes the torch front end (:func:`make_frontend`) or the equivalent
``transformers.ClapFeatureExtractor`` saved in exports (:func:`make_feature_extractor`), and an extractor read from a
directory becomes a config again (:func:`frontend_config_from_extractor`).
"""

from __future__ import annotations

import dataclasses

from basekit.errors import UserError
from tclap.features import ClapMelFrontEnd
from tclap.models.configs import FrontEndConfig

TCLAP_CONFIG_FILE = "tclap_config.json"  # resolved ClapArchConfig + provenance, beside config.json


def make_frontend(fe: FrontEndConfig):
    """The torch mel front end of a :class:`FrontEndConfig`."""
    return ClapMelFrontEnd(**dataclasses.asdict(fe))


def make_feature_extractor(fe: FrontEndConfig):
    """The equivalent ``transformers.ClapFeatureExtractor`` (saved in exports for ClapProcessor users)."""
    from transformers import ClapFeatureExtractor  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)

    max_s = int(fe.max_length_s) if float(fe.max_length_s).is_integer() else fe.max_length_s
    return ClapFeatureExtractor(
        feature_size=fe.n_mels, sampling_rate=fe.sample_rate, hop_length=fe.hop_length, max_length_s=max_s,
        fft_window_size=fe.n_fft, frequency_min=fe.f_min, frequency_max=fe.f_max, truncation=fe.truncation,
        padding=fe.padding,
    )


def frontend_config_from_extractor(fe, enable_fusion: bool = False) -> FrontEndConfig:
    """Read a ``ClapFeatureExtractor``'s settings as a :class:`FrontEndConfig`."""
    truncation = str(fe.truncation)
    if truncation == "fusion":
        if enable_fusion:
            raise UserError(
                "fused CLAP models (enable_fusion=True) need the 4-crop 'fusion' front end, which tclap does not "
                "implement; use an unfused checkpoint such as laion/clap-htsat-unfused"
            )
        truncation = "rand_trunc"  # an unfused model only ever sees the single-crop features
    return FrontEndConfig(
        sample_rate=int(fe.sampling_rate), n_fft=int(fe.fft_window_size), hop_length=int(fe.hop_length),
        n_mels=int(fe.feature_size), f_min=float(fe.frequency_min), f_max=float(fe.frequency_max),
        max_length_s=float(fe.nb_max_samples) / float(fe.sampling_rate), truncation=truncation,
        padding=str(fe.padding),
    )
