"""reelbot's render pipeline: script → scenes → audio and images → clips → video.

Usable on its own (the `reelbot render` command) and by any front end (the Discord bot).
"""

from __future__ import annotations

from .aspect import Aspect, Size
from .config import Settings, load_settings
from .errors import (
    ConfigError,
    ImageError,
    InputError,
    MediaError,
    ProviderError,
    ReelbotError,
    SceneFailed,
    ScriptError,
    StorageError,
    TTSError,
)
from .events import JobDone, JobFailed, JobStarted, ProgressEvent, SceneEvent, Stage, Status
from .plan import RenderPlan, ScenePlan, plan_render
from .render import Renderer, RenderResult, render_plan
from .script import Scene, Script, parse_script

__all__ = [
    "Aspect",
    "ConfigError",
    "ImageError",
    "InputError",
    "JobDone",
    "JobFailed",
    "JobStarted",
    "MediaError",
    "ProgressEvent",
    "ProviderError",
    "ReelbotError",
    "RenderPlan",
    "RenderResult",
    "Renderer",
    "Scene",
    "SceneEvent",
    "SceneFailed",
    "ScenePlan",
    "Script",
    "ScriptError",
    "Settings",
    "Size",
    "Stage",
    "Status",
    "StorageError",
    "TTSError",
    "load_settings",
    "parse_script",
    "plan_render",
    "render_plan",
]
