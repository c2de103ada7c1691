"""Every error reelbot shows a user, in one hierarchy.

    ReelbotError                 message is written for the person who asked for the render
     ├── InputError              what the user gave cannot be used (`reelbot` exits 2)
     │    ├── ConfigError        the configuration file or environment is wrong
     │    └── ScriptError        the script cannot be read (names the line and scene)
     ├── ProviderError           a remote or local generator failed
     │    ├── TTSError
     │    ├── ImageError
     │    │    └── KeyRefused    an image key answered 401 or 402: taken out, names its variable
     │    ├── LLMError           the chat model's server (`reelbot draft`)
     │    └── DraftError         the model's script could not be used, even when told why
     ├── MediaError              ffmpeg / ffprobe / espeak-ng failed (keeps stderr for logs)
     ├── StorageError            a file could not be written: a full disk, a read-only place
     └── SceneFailed             a scene failed at one stage (wraps one of the above)

Front ends print `str(error)`; none of these messages contain a secret or a traceback.
Every error but InputError is a render that failed (`reelbot` exits 1): trying again, or
fixing the machine (a full disk, a service that is down), may help; the input was fine.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DraftError",
    "ImageError",
    "InputError",
    "KeyRefused",
    "LLMError",
    "MediaError",
    "ProviderError",
    "ReelbotError",
    "SceneFailed",
    "ScriptError",
    "StorageError",
    "TTSError",
]


class ReelbotError(Exception):
    """Base class: `str(err)` is a message fit to show a user."""


class InputError(ReelbotError):
    """The script, the configuration or an option cannot be used as given."""


class ConfigError(InputError):
    pass


class ScriptError(InputError):
    """A script that cannot be rendered; always carries the line it concerns."""

    def __init__(self, problem: str, *, line: int, scene: int | None = None) -> None:
        self.problem = problem
        self.line = line
        self.scene = scene
        where = f"line {line}" + (f" (scene {scene})" if scene is not None else "")
        super().__init__(f"{where}: {problem}")


class ProviderError(ReelbotError):
    """A generator failed. `retryable` tells whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class TTSError(ProviderError):
    pass


class ImageError(ProviderError):
    pass


class KeyRefused(ImageError):
    """The image service refused a key (401: not a valid key; 402: no credit left). The image
    slot takes the key out and sends the request with another (`pipeline/image_slot.py`).
    `variable` is the environment variable the key came from; the key itself is never in it."""

    def __init__(self, message: str, *, variable: str, status: int) -> None:
        self.variable = variable
        self.status = status
        super().__init__(message)


class LLMError(ProviderError):
    """The chat model's server refused or failed (`reelbot draft`)."""


class DraftError(ProviderError):
    """The model's script could not be used, even after it was told why."""


class MediaError(ReelbotError):
    """A local media program failed; `detail` holds the tail of its stderr for the logs."""

    def __init__(self, message: str, *, detail: str = "", returncode: int | None = None) -> None:
        self.detail = detail
        self.returncode = returncode  # the program's exit status, when it ran and failed
        super().__init__(message)


class StorageError(ReelbotError):
    """A file could not be written (the message says why, in the system's words)."""


class SceneFailed(ReelbotError):
    """One scene failed at one stage ("audio", "image" or "clip")."""

    def __init__(self, scene: int, stage: str, cause: Exception) -> None:
        self.scene = scene
        self.stage = stage
        self.cause = cause
        reason = str(cause) if isinstance(cause, ReelbotError) else "an unexpected error"
        super().__init__(f"scene {scene}, {stage}: {reason}")
