"""The model's own settings that the diffusers configs do not hold: ``audioldm_cond.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from audioldm_cond.mel import AudioLDMMelConfig
from basekit.errors import UserError

CONFIG_FILE = "audioldm_cond.json"


@dataclass
class ComponentsConfig:
    """What is not in the diffusers configs: front end, length limit, conditioning settings, provenance."""

    name: str = "custom"
    mel: AudioLDMMelConfig = field(default_factory=AudioLDMMelConfig)
    max_seconds: float = 10.24  # longest generation allowed (the training length of AudioLDM-s)
    clap: str = ""  # the conditioning encoder's name or path when the model was built (provenance)
    source: str = "text"  # conditioning source used in training: text | audio | mix
    cfg_dropout: float = 0.1
    audio_prob: float = 0.5
    adapter_dim: int | None = None
    vocoder: str = "hifigan"  # hifigan | griffinlim
    # Per-channel range [[lo_0, ...], [hi_0, ...]] of the *scaled* training latents (0.1 / 99.9 percentiles),
    # recorded by the LDM trainer. When set, generation clamps each step's predicted clean latent x0 to it
    # (DDPM's ``clip_sample``, per channel and for every scheduler); see ``clamp_prediction``.
    latent_range: list | None = None
    # Fixed time-position channels appended to the UNet's input (see ``TimePositionChannels``); 0 for AudioLDM.
    position_channels: int = 0
    # A learned map from the condition onto ``cond_map_channels`` input channels laid out over
    # ``cond_map_segments`` stretches of the clip (see ``CondTimeMap``); 0 for AudioLDM.
    cond_map_channels: int = 0
    cond_map_segments: int = 8
    extra: dict = field(default_factory=dict)  # free-form provenance (recipe, steps, scores)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ComponentsConfig":
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"{CONFIG_FILE} has unknown keys {unknown} (written by a newer version? upgrade)")
        if isinstance(d.get("mel"), dict):
            d["mel"] = AudioLDMMelConfig(**d["mel"])
        return cls(**d)
