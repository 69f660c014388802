"""Named CLAP architectures as dataclasses (open_clip's ``model_configs`` idea, in code).

Each :class:`ClapArchConfig` names an audio tower (HTSAT, a Swin transformer on the log-mel image), a
text tower (RoBERTa-shaped), the shared projection size, the audio front end and the tokenizer. It turns
into a ``transformers.ClapConfig`` with :meth:`ClapArchConfig.to_hf`, and is saved (resolved) inside
every export as ``tclap_config.json``.

Names:
    ``tiny``               test / embedded size: 2-stage HTSAT (hidden 64), 2-layer text (hidden 128),
                           projection 128, 16 kHz audio with hop 320 (4 s -> 201 frames), our BPE tokenizer.
    ``htsat-tiny-roberta`` the size of LAION-CLAP's HTSAT-tiny + roberta-base (= laion/clap-htsat-unfused).
    ``htsat-base-roberta`` LAION-CLAP's HTSAT-base + roberta-base (music_speech_audioset_epoch_15_esc_89.98.pt).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from basekit.errors import UserError
from tclap.features import ClapMelConfig


# The front end's settings are the mel front end's own config (one definition, in tclap.features).
FrontEndConfig = ClapMelConfig


@dataclass
class AudioTowerConfig:
    """HTSAT audio tower. ``hidden_size = patch_embeds_hidden_size * 2 ** (len(depths) - 1)``."""

    patch_embeds_hidden_size: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_attention_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    spec_size: int = 256
    patch_size: int = 4
    patch_stride: tuple[int, int] = (4, 4)
    num_mel_bins: int = 64
    enable_fusion: bool = False

    @property
    def hidden_size(self) -> int:
        return int(self.patch_embeds_hidden_size * 2 ** (len(self.depths) - 1))


@dataclass
class TextTowerConfig:
    """RoBERTa-shaped text tower. ``vocab_size=None`` means "the tokenizer's size" (tiny models)."""

    vocab_size: int | None = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_length: int = 77  # longest token sequence we feed (LAION-CLAP pads/truncates to 77)

    @property
    def max_position_embeddings(self) -> int:
        # RoBERTa position ids start at padding_idx + 1 = 2, so the table needs max_length + 2 rows
        # (roberta-base: 512 tokens -> 514).
        return max(self.max_length + 2, 514 if self.vocab_size == 50265 else 0)


@dataclass
class ClapArchConfig:
    """One named CLAP architecture: towers, projection, front end and tokenizer kind."""

    name: str
    audio: AudioTowerConfig = field(default_factory=AudioTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    projection_dim: int = 512
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)
    tokenizer: str = "roberta"  # "tiny" (built in code) or "roberta" (bring a directory)
    description: str = ""

    def to_hf(self, vocab_size: int | None = None):
        """The ``transformers.ClapConfig``; ``vocab_size`` fills ``text.vocab_size=None`` (tiny models)."""
        from transformers import ClapConfig  # noqa: PLC0415 (heavy import kept out of module import)

        vocab = self.text.vocab_size if self.text.vocab_size is not None else vocab_size
        if vocab is None:
            raise UserError(f"config {self.name!r} takes its vocabulary size from the tokenizer; pass vocab_size")
        a, t = self.audio, self.text
        return ClapConfig(
            projection_dim=self.projection_dim,
            audio_config=dict(
                patch_embeds_hidden_size=a.patch_embeds_hidden_size, depths=list(a.depths),
                num_attention_heads=list(a.num_attention_heads), window_size=a.window_size,
                spec_size=a.spec_size, patch_size=a.patch_size, patch_stride=list(a.patch_stride),
                num_mel_bins=a.num_mel_bins, hidden_size=a.hidden_size, enable_fusion=a.enable_fusion,
                fusion_type="aff_2d" if a.enable_fusion else None,
            ),
            text_config=dict(
                vocab_size=vocab, hidden_size=t.hidden_size, num_hidden_layers=t.num_hidden_layers,
                num_attention_heads=t.num_attention_heads, intermediate_size=t.intermediate_size,
                max_position_embeddings=t.max_position_embeddings,
            ),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClapArchConfig":
        a = dict(d.get("audio", {}))
        for k in ("depths", "num_attention_heads", "patch_stride"):
            if k in a:
                a[k] = tuple(a[k])
        return cls(
            name=d["name"], audio=AudioTowerConfig(**a), text=TextTowerConfig(**d.get("text", {})),
            projection_dim=d.get("projection_dim", 512), frontend=FrontEndConfig(**d.get("frontend", {})),
            tokenizer=d.get("tokenizer", "roberta"), description=d.get("description", ""),
        )


def _tiny() -> ClapArchConfig:
    return ClapArchConfig(
        name="tiny",
        audio=AudioTowerConfig(
            patch_embeds_hidden_size=64, depths=(2, 2), num_attention_heads=(4, 8), window_size=8,
            spec_size=128, patch_size=8, patch_stride=(8, 8), num_mel_bins=64,
        ),
        text=TextTowerConfig(
            vocab_size=None, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=512, max_length=32,
        ),
        projection_dim=128,
        frontend=FrontEndConfig(
            sample_rate=16000, n_fft=1024, hop_length=320, n_mels=64, f_min=50.0, f_max=8000.0,
            max_length_s=4.0,
        ),
        tokenizer="tiny",
        description="tiny CLAP for tests and the embedded models (2-stage HTSAT, 2-layer text, 16 kHz)",
    )


def _htsat_tiny_roberta() -> ClapArchConfig:
    return ClapArchConfig(
        name="htsat-tiny-roberta",
        audio=AudioTowerConfig(patch_embeds_hidden_size=96, depths=(2, 2, 6, 2), num_attention_heads=(4, 8, 16, 32)),
        text=TextTowerConfig(),
        projection_dim=512,
        frontend=FrontEndConfig(),
        description="LAION-CLAP HTSAT-tiny + roberta-base (laion/clap-htsat-unfused), 48 kHz, 10 s",
    )


def _htsat_base_roberta() -> ClapArchConfig:
    return ClapArchConfig(
        name="htsat-base-roberta",
        audio=AudioTowerConfig(patch_embeds_hidden_size=128, depths=(2, 2, 12, 2), num_attention_heads=(4, 8, 16, 32)),
        text=TextTowerConfig(),
        projection_dim=512,
        frontend=FrontEndConfig(),
        description="LAION-CLAP HTSAT-base + roberta-base (music/speech/audioset checkpoints), 48 kHz, 10 s",
    )


_REGISTRY = {"tiny": _tiny, "htsat-tiny-roberta": _htsat_tiny_roberta, "htsat-base-roberta": _htsat_base_roberta}
CONFIG_NAMES = tuple(_REGISTRY)


def get_config(name: str) -> ClapArchConfig:
    """A fresh copy of the named architecture (see the module docstring), or one read from a JSON file.

    A ``.json`` path holds :meth:`ClapArchConfig.to_dict` output, or an export's ``tclap_config.json``.
    """
    if name.endswith(".json"):
        import json  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        p = Path(name)
        try:
            d = json.loads(p.read_text())
            return ClapArchConfig.from_dict(d["arch"] if "arch" in d else d)
        except FileNotFoundError:
            raise UserError(f"config file not found: {p}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"config file {p} is not a tclap architecture config ({exc})") from None
    if name not in _REGISTRY:
        raise UserError(f"unknown CLAP config {name!r}; choose one of: {', '.join(CONFIG_NAMES)}")
    return _REGISTRY[name]()
