"""A render plan: a script with every default resolved, ready to run.

Seeds are fixed here, from the scene's own seed or derived from its prompt, so a re-render or a
resumed render asks for exactly the same image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .aspect import Aspect, Size
from .captions import captions_wanted
from .config import Settings
from .errors import ScriptError
from .images.base import ImageRequest
from .own_media import OwnMedia
from .script import Script
from .soundtrack import pick_music
from .text import clean_text
from .tts import default_voice

__all__ = ["RenderPlan", "ScenePlan", "derive_seed", "merge_negative", "plan_render"]


@dataclass(frozen=True)
class ScenePlan:
    number: int
    narration: str
    voice: str
    speed: float
    # The image that would be generated; with `media` (the scene's own picture or clip) none is.
    image: ImageRequest
    media: OwnMedia | None = None


@dataclass(frozen=True)
class RenderPlan:
    title: str
    aspect: Aspect
    frame: Size
    scenes: tuple[ScenePlan, ...]
    # Burned-in captions, and the background music file (None: narration only).
    captions: bool = False
    music: Path | None = None


def derive_seed(prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") % 2**31


def merge_negative(*parts: str | None) -> str:
    """Join comma-separated negative prompts, most general first, without repeating a term."""
    seen: dict[str, str] = {}
    for part in parts:
        for term in (part or "").split(","):
            cleaned = " ".join(term.split())
            if cleaned and cleaned.lower() not in seen:
                seen[cleaned.lower()] = cleaned
    return ", ".join(seen.values())


def plan_render(
    script: Script,
    settings: Settings,
    *,
    aspect: Aspect | None = None,
    voice: str | None = None,
    title: str | None = None,
    captions: bool | None = None,
    music: Path | None = None,
    media: Mapping[int, OwnMedia] | None = None,
) -> RenderPlan:
    """Resolve a script. Explicit arguments (a front end's options) beat the script's header,
    which beats the config.

    `media`: each scene's own media by scene number, from `pipeline.own_media.prepare_media`
    (checked and in the cache); a script naming media needs it (ScriptError otherwise).

    `captions`: None follows `[captions] enabled` ("auto": on for 9:16). `music`: a file or a
    folder, else `[sound] music`; from a folder one track is picked by the script's content.
    Raises ConfigError when the music does not exist."""
    # A front end's options are user text too: cleaned as the script's own text is.
    title, voice = clean_text(title or "") or None, clean_text(voice or "") or None
    _check_speech_input(script, settings)
    media = media or {}
    for scene in script.scenes:
        if scene.media is not None and scene.number not in media:
            raise ScriptError(f"media {scene.media!r} cannot be used here: no media was given "
                              "with this script", line=scene.line, scene=scene.number)  # fmt: skip
    chosen = aspect or script.aspect or settings.video.aspect
    size = settings.images.size_for(chosen)
    fallback_voice = default_voice(settings)
    scenes = tuple(
        ScenePlan(
            number=scene.number,
            narration=scene.narration,
            voice=voice or scene.voice or script.voice or fallback_voice,
            speed=settings.tts.speed,
            image=ImageRequest(
                scene=scene.number,
                prompt=scene.image_prompt,
                negative_prompt=merge_negative(
                    settings.images.negative_prompt, script.negative_prompt, scene.negative_prompt
                ),
                width=size.width,
                height=size.height,
                seed=scene.seed if scene.seed is not None else derive_seed(scene.image_prompt),
                steps=settings.images.model_steps,
                model=settings.images.model,
            ),
            media=media.get(scene.number) if scene.media is not None else None,
        )
        for scene in script.scenes
    )
    resolved_title = title or script.title
    source = music or settings.sound.music
    track = None
    if source is not None:
        seed = "\n".join([resolved_title, *(s.narration for s in scenes)])
        track = pick_music(source, seed).resolve()
    return RenderPlan(
        title=resolved_title, aspect=chosen, frame=chosen.frame, scenes=scenes,
        captions=captions_wanted(settings.captions, chosen) if captions is None else captions,
        music=track,
    )  # fmt: skip


def _check_speech_input(script: Script, settings: Settings) -> None:
    """A speech server takes at most `[tts] max_input` characters a request: refuse a longer
    scene now, not after the images are paid for."""
    if settings.tts.provider == "espeak":
        return
    limit = settings.tts.max_input
    for scene in script.scenes:
        if len(scene.narration) > limit:
            raise ScriptError(
                f"the narration is {len(scene.narration):,} characters; the speech server takes "
                f"at most {limit:,} in one request ([tts] max_input): split the scene",
                line=scene.line,
                scene=scene.number,
            )
