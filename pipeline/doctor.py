"""`reelbot doctor`: is this machine ready to render?"""

from __future__ import annotations

import ctypes
import importlib.metadata
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape

from .config import Settings, load_settings
from .errors import ConfigError
from .image_slot import image_keys
from .images.card import FONT_FILES
from .tts import default_voice, tts_provider
from .tts._espeak_words import LIBRARY as ESPEAK_LIBRARY
from .tts.piper import find_piper_voices, piper_problem

__all__ = ["run_doctor"]


def run_doctor(config: Path | None, console: Console, *, online: bool = False) -> int:
    """Check the machine and the config; with `online`, also ask the image API (one cheap
    `GET {base_url}/models`: no image is made). 0 when ready, 1 when a check failed."""
    problems = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += not ok
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        console.print(f"{mark} {what}: {escape(detail)}", highlight=False, soft_wrap=True)

    for program in ("ffmpeg", "ffprobe", "espeak-ng"):
        path = shutil.which(program)
        report(path is not None, program, _version(program) if path else "not installed")
    report("libx264" in _output(["ffmpeg", "-hide_banner", "-encoders"]), "H.264 encoder",
           "libx264")  # fmt: skip
    font = next((f for f in FONT_FILES if Path(f).is_file()), None)
    report(font is not None, "font", font or "no Noto/DejaVu font; cards use a fallback")
    report("ass" in _output(["ffmpeg", "-hide_banner", "-filters"]), "captions filter",
           "libass (ffmpeg's ass filter)")  # fmt: skip
    try:
        ctypes.CDLL(ESPEAK_LIBRARY)
        report(True, "word timing", f"{ESPEAK_LIBRARY} (captions follow espeak-ng's words)")
    except OSError:
        report(False, "word timing", f"{ESPEAK_LIBRARY} cannot be loaded (install espeak-ng)")
    try:
        settings: Settings | None = load_settings(config)
        report(True, "config", str(config) if config else "built-in defaults")
    except ConfigError as exc:
        settings = None
        report(False, "config", str(exc))
    if settings is not None:
        provider = settings.image_provider
        detail = f"{provider} ({settings.images.model})" if provider == "together" else provider
        keys_ok = True
        if provider == "card":
            detail += " — offline storyboard cards; set TOGETHER_API_KEY for FLUX images"
        else:
            try:
                count = len(image_keys(settings))
                detail += f", {count} keys" if count > 1 else ""
            except ConfigError as exc:
                keys_ok, detail = False, str(exc)
        report(keys_ok, "images", detail)
        _report_speech(settings, report)
        families = _output(["fc-list", ":", "family"])
        caption_font = settings.captions.font
        installed = caption_font.lower() in families.lower()
        detail = caption_font if installed else f"{caption_font} is not installed"
        report(installed, "caption font", detail)
        report(True, "data", str(settings.storage.data_dir.resolve()))
        if online:
            report(*check_together_online(settings))
    console.print("ready to render" if not problems else f"{problems} problem(s) found")
    return 0 if not problems else 1


def check_together_online(settings: Settings) -> tuple[bool, str, str]:
    """(ok, what, detail): does Together.ai take the key, and offer `[images] model` as an
    image model? One `GET {base_url}/models`; nothing is generated, nothing is billed."""
    what = "Together.ai"
    images = settings.images
    if settings.image_provider != "together" or not settings.image_key_set:
        return True, what, "not asked (images are offline cards; no TOGETHER_API_KEY is set)"
    try:
        keys = image_keys(settings)
    except ConfigError as exc:
        return False, what, str(exc)
    url = f"{images.base_url.rstrip('/')}/models"
    for key in keys:  # every key of `[images] keys`, one request each
        headers = {"Authorization": f"Bearer {key.secret}"}
        try:
            with httpx.Client(timeout=min(images.timeout, 30.0)) as client:
                response = client.get(url, headers=headers)
        except httpx.TimeoutException:
            wait = min(images.timeout, 30)
            return False, what, f"{images.base_url} did not answer within {wait:g} s"
        except httpx.HTTPError as exc:
            return False, what, f"{images.base_url} could not be reached ({type(exc).__name__})"
        if response.status_code in (401, 403):
            return (
                False,
                what,
                (f"the API key{'' if len(keys) == 1 else f' in {key.name}'} was refused "
                 f"(HTTP {response.status_code}); check {key.name}"),
            )  # fmt: skip
    if response.status_code != 200:
        return False, what, f"{url} answered HTTP {response.status_code}"
    try:
        models = response.json()
        offered = {str(m["id"]): str(m.get("type", "")) for m in models}
    except (ValueError, TypeError, KeyError):
        return False, what, f"{url} did not answer with a list of models"
    model = images.model
    if model not in offered:
        choices = sorted(m for m, kind in offered.items() if kind == "image")[:6]
        return (
            False,
            what,
            (
                f"the key works, but the model {model} is not offered; set [images] model to one "
                f"of its image models ({', '.join(choices) or 'none listed'})"
            ),
        )
    if offered[model] != "image":
        return (
            False,
            what,
            f"the model {model} is offered as a {offered[model]} model, not an image model",
        )
    return True, what, f"the key works and {model} is offered as an image model"


def _report_speech(settings: Settings, report: Callable[[bool, str, str], None]) -> None:
    """The speech provider `[tts] provider` chooses, and whether Piper can speak."""
    configured = settings.tts.provider
    provider = tts_provider(settings)
    problem = piper_problem(settings.tts)
    if problem is None:
        voices = find_piper_voices(settings.tts)
        version = importlib.metadata.version("piper-tts")
        report(True, "Piper", f"piper-tts {version} (GPL-3.0, run as a separate process)")
        shown = ", ".join(f"{v.name} ({v.model})" for v in voices[:3])
        report(True, "Piper voices", shown + (f" and {len(voices) - 3} more" if voices[4:] else ""))
    else:  # a problem only when Piper was asked for; with "auto", espeak-ng speaks instead
        report(provider != "piper", "Piper",
               problem if provider == "piper" else f"not used: {problem}")  # fmt: skip
    how = " (auto)" if configured == "auto" else ""
    report(True, "speech", f"{provider}{how}, voice {default_voice(settings)}")


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def _version(program: str) -> str:
    lines = _output([program, "--version"]).strip().splitlines()
    return lines[0][:80] if lines else "installed"
