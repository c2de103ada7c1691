"""A one-scene edit: how long from submitting the edit to the new video.

A 12-scene script is rendered once (this fills the artifact cache); then one scene is changed
and the clock runs from submitting the change to the new video:

- **CLI**: the script with one scene's image prompt and narration changed, rendered again by
  `reelbot render` in a process of its own (its start-up included), as a user would;
- **Discord Regenerate**: the real bot (`python -m bot`, against the fake Discord of
  tests/fakes) renders the same script; then the requester clicks 🔁 Regenerate on one scene
  (a new seed: a new image, the same narration), and the clock stops when the new video is
  posted.

The bound is made of the parts such an edit cannot avoid, each timed on its own in the same
run, after the edits: one image (the fake Together's latency, through the real client), that
scene's speech (the fake speech server, through the real client), one clip (the scene's own
clip encoded again, captions and all), the join (stream copy of all the clips) and the sound
pass (loudness over the whole narration: it does not add up scene by scene, so a one-scene
edit pays for all of it). Bound = 1.1 × (image + speech + clip) + join + sound pass; for
Regenerate, without the speech (the narration is kept).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from pipeline.aspect import Aspect
from pipeline.config import Settings
from pipeline.images import make_images
from pipeline.plan import RenderPlan, plan_render
from pipeline.render import Renderer, SceneArtifacts
from pipeline.script import parse_script
from pipeline.soundtrack import (
    NarrationPart,
    add_soundtrack,
    make_soundtrack,
    sound_pass_needed,
)
from pipeline.tts import make_tts
from pipeline.video import ClipSpec, encode_clip, join_clips

from .fakes import BENCH_KEY, Latencies, bench_settings, fake_services
from .measure import median
from .media import make_script

T = TypeVar("T")
EDIT_SLACK = 1.1  # the edit may cost this × (image + speech + clip), plus join and sound pass
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Parts:
    """The work a one-scene edit cannot avoid, each part timed on its own (seconds)."""

    image: float
    speech: float
    clip: float
    join: float
    sound: float  # 0 when no sound pass is needed (no loudness, no music)


@dataclass(frozen=True)
class Edit:
    """One edit: its turnaround, and its parts timed on their own right after it."""

    turnaround: float  # from submitting the edit to the new video
    parts: Parts


@dataclass(frozen=True)
class EditRun:
    """Several edits of one scene, one after another; the figures are the medians."""

    front: str  # "CLI" or "Discord Regenerate"
    scenes: int
    edits: tuple[Edit, ...]
    speech: bool  # the edit changes the narration (Regenerate does not)
    sound_reused: bool = False  # every edit added the cached soundtrack: no sound pass ran

    @property
    def turnaround(self) -> float:
        return median(e.turnaround for e in self.edits)

    @property
    def parts(self) -> Parts:
        """Each part's median over the edits."""
        return Parts(*(median(getattr(e.parts, f.name) for e in self.edits)
                       for f in fields(Parts)))  # fmt: skip

    @property
    def work(self) -> float:
        """The scene's own work: image, speech (if changed) and clip."""
        parts = self.parts
        return parts.image + (parts.speech if self.speech else 0.0) + parts.clip

    @property
    def bound(self) -> float:
        return self._bound(self.parts)

    def _bound(self, parts: Parts) -> float:
        work = parts.image + (parts.speech if self.speech else 0.0) + parts.clip
        return EDIT_SLACK * work + parts.join + parts.sound

    @property
    def ratio(self) -> float:
        """Median over the edits of the turnaround / the bound of the same edit's parts."""
        return median(e.turnaround / self._bound(e.parts) for e in self.edits)

    @property
    def met(self) -> bool:
        return self.ratio <= 1.0

    @property
    def sound_share(self) -> float:
        """The sound pass's share of the turnaround (none when the soundtrack was reused)."""
        return 0.0 if self.sound_reused else self.parts.sound / self.turnaround


EVENINGS = ("dusk", "dawn", "noon", "midnight", "twilight")


def edited_script(text: str, scene: int, version: int = 0) -> str:
    """`text` (a make_script script) with scene `scene`'s image prompt and narration changed,
    differently for each `version` (so no edit finds another's artifacts in the cache)."""
    lines = text.splitlines()
    start = lines.index(f"## Scene {scene}")
    assert lines[start + 1].startswith("image: ")
    when = EVENINGS[version % len(EVENINGS)] + " " * (version // len(EVENINGS))
    lines[start + 1] += f", seen again at {when.strip()} ({version})"
    lines[start + 2] = (
        f"An edited line, spoken anew at {when.strip()}: the keeper counts {version}."
    )
    return "\n".join(lines) + "\n"


async def _timed(work: Awaitable[T]) -> tuple[float, T]:
    started = time.monotonic()
    value = await work
    return time.monotonic() - started, value


async def time_parts(settings: Settings, plan: RenderPlan, scene: int, scratch: Path) -> Parts:
    """Each part of a one-scene edit on its own, on the artifacts of `plan` (all cached)."""
    scratch.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient() as client:
        renderer = Renderer(settings, tts=make_tts(settings, client),
                            images=make_images(settings, client))  # fmt: skip
        # Everything is in the cache: this only finds the artifacts.
        found = await renderer.render(plan, scratch / "unused.mp4", join=False)
        artifacts = {s.number: s for s in found.scenes}
        target = next(s for s in plan.scenes if s.number == scene)
        request = replace(target.image, seed=target.image.seed + 1)  # not a cache hit
        image, _ = await _timed(renderer.images.generate(request, scratch / "image.png"))
        speech, _ = await _timed(renderer.tts.synthesize(target.narration, voice=target.voice,
                                                         speed=target.speed,
                                                         out=scratch / "speech.wav"))  # fmt: skip
    done: SceneArtifacts = artifacts[scene]
    spec = ClipSpec(done.image, done.audio, done.audio_seconds, plan.frame, settings.video,
                    captions=done.captions)  # fmt: skip
    clip, _ = await _timed(encode_clip(spec, scratch / "clip.mp4", scene=scene))
    scenes = [artifacts[s.number] for s in plan.scenes]
    joined = scratch / "joined.mp4"
    join, _ = await _timed(join_clips([s.clip for s in scenes], joined, title=plan.title,
                                      timeout=settings.video.timeout))  # fmt: skip
    sound = 0.0
    if sound_pass_needed(settings.sound, music=plan.music, crossfade=False):
        parts = [NarrationPart(s.audio.resolve(), s.clip_seconds) for s in scenes]
        timeout = settings.video.timeout

        async def sound_pass() -> None:  # uncached: made, then added to the joined video
            track = scratch / "sound.m4a"
            await make_soundtrack(track, parts, config=settings.sound, music=plan.music,
                                  audio_bitrate=settings.video.audio_bitrate,
                                  timeout=timeout)  # fmt: skip
            await add_soundtrack(joined, track, scratch / "sound.mp4", timeout=timeout)

        sound, _ = await _timed(sound_pass())
    shutil.rmtree(scratch, ignore_errors=True)
    return Parts(image, speech, clip, join, sound)


def _cli_env(together_url: str, speech_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REELBOT_") and k not in ("TOGETHER_API_KEY", "OPENAI_API_KEY")
    }
    env.update({
        "TOGETHER_API_KEY": BENCH_KEY,
        "REELBOT_IMAGES__PROVIDER": "together",
        "REELBOT_IMAGES__BASE_URL": together_url,
        "REELBOT_IMAGES__BACKOFF_BASE": "0.05",
        "REELBOT_IMAGES__BACKOFF_MAX": "0.5",
        "REELBOT_TTS__PROVIDER": "openai",
        "REELBOT_TTS__BASE_URL": speech_url,
        "REELBOT_STORAGE__DATA_DIR": str(data_dir),
    })  # fmt: skip
    return env


async def _cli(script: Path, out: Path, env: Mapping[str, str], cwd: Path) -> float:
    """`reelbot render SCRIPT -o OUT` in its own process; its wall time."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.cli", "render", str(script), "-o", str(out),
        env=dict(env), cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"reelbot render failed: {err.decode(errors='replace')[-2000:]}")
    return time.monotonic() - started


def edited_scene(scenes: int) -> int:
    """The scene an edit changes: the middle one (6 of 12)."""
    return max(1, scenes // 2)


async def cli_edit(scenes: int, *, aspect: str, latencies: Latencies, chars: tuple[int, int],
                   workdir: Path, rounds: int) -> EditRun:  # fmt: skip
    frame = Aspect.parse(aspect)
    edited_number = edited_scene(scenes)
    run_dir = workdir / f"edit-cli-{aspect.replace(':', 'x')}-{scenes}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    original = make_script(scenes, chars=chars)
    (run_dir / "before.md").write_text(original, encoding="utf-8")
    edits = []
    async with fake_services(latencies, sizes=[frame.image]) as (together, speech):
        data = run_dir / "data"
        env = _cli_env(together.base_url, speech.base_url, data)
        settings = bench_settings(together, speech, data)
        await _cli(run_dir / "before.md", run_dir / "before.mp4", env, run_dir)
        for version in range(rounds):
            edited = edited_script(original, edited_number, version)
            (run_dir / "after.md").write_text(edited, encoding="utf-8")
            images, narrations = len(together.requests), len(speech.requests)
            turnaround = await _cli(run_dir / "after.md", run_dir / "after.mp4", env, run_dir)
            if len(together.requests) - images != 1 or len(speech.requests) - narrations != 1:
                raise RuntimeError("the edit did not make exactly one image and one narration")
            plan = plan_render(parse_script(edited), settings, aspect=frame)
            edits.append(Edit(turnaround, await time_parts(settings, plan, edited_number,
                                                           run_dir / "parts")))  # fmt: skip
    shutil.rmtree(run_dir, ignore_errors=True)
    return EditRun("CLI", scenes, tuple(edits), speech=True)


# ------------------------------------------------------------------ the Discord review


async def discord_regenerate(scenes: int, *, aspect: str, latencies: Latencies,
                             chars: tuple[int, int], workdir: Path,
                             rounds: int) -> EditRun:  # fmt: skip
    """Render with the real bot against the fake Discord, then click Regenerate on one
    scene's message; the time from the click to the new video's message."""
    from tests.botproc import (
        FAST_VIDEO_ENV,
        bot_env,
        job_id_of,
        progress_messages,
        replies_to,
        running_bot,
        toml_text,
    )
    from tests.fakes.discord import AttachmentSpec, FakeDiscord, GuildSpec

    frame = Aspect.parse(aspect)
    edited_number = edited_scene(scenes)
    run_dir = workdir / f"edit-bot-{aspect.replace(':', 'x')}-{scenes}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    script = make_script(scenes, chars=chars)
    guild = GuildSpec(name="Bench")
    channel = guild.channels[0].id
    config = run_dir / "config.toml"
    config.write_text(toml_text({"discord": {"guild_ids": [guild.id], "edit_interval": 0.5}}))
    async with (
        FakeDiscord(guilds=[guild]) as fake,
        fake_services(latencies, sizes=[frame.image]) as (together, speech),
    ):
        data = run_dir / "data"
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=data)  # fmt: skip
        for key in FAST_VIDEO_ENV:  # the shipped video and sound settings, not the tests'
            env.pop(key, None)
        env["TOGETHER_API_KEY"] = BENCH_KEY
        env["REELBOT_VIDEO__ASPECT"] = frame.value
        async with running_bot(fake, config, env, run_dir / "bot.log"):
            member = guild.members[0].user.username
            options: dict[str, Any] = {"script": AttachmentSpec("reel.md", script.encode())}
            handle = await fake.send_slash_command("render", options, member=member)
            await handle.wait_followups(1, timeout=30)
            job = job_id_of(handle)
            [progress] = await fake.wait_for(lambda: progress_messages(fake, channel, job), 30)
            thread = await fake.wait_for(lambda: fake.threads.get(progress.id), 60, "thread")

            def videos() -> list[Any]:
                return [m for m in replies_to(fake, channel, progress.id) if m.attachments]

            def count(n: int) -> Callable[[], list[Any] | None]:
                return lambda: videos() if len(videos()) >= n else None

            await fake.wait_for(count(1), 600, "the first video")
            settings = bench_settings(together, speech, data)
            plan = plan_render(parse_script(script), settings, aspect=frame)
            edits = []
            soundtracks = len(list((data / "cache" / "soundtrack").rglob("*.m4a")))
            for version in range(1, rounds + 1):
                await _until_done(fake, job, member)  # the video is posted a moment before
                scene_message = next(
                    m for m in fake.messages.get(thread.id, [])
                    if m.embeds and m.embeds[0].get("title") == f"Scene {edited_number}"
                )  # fmt: skip
                regen = next(c["custom_id"] for row in scene_message.components
                             for c in row.get("components", [])
                             if c["custom_id"].startswith("reelbot:regen:"))  # fmt: skip
                images = len(together.requests)
                started = time.monotonic()
                click = await fake.click_button(scene_message, regen, member=member)
                answer = await _answer(click)
                if not answer.startswith(f"Regenerating scene {edited_number}"):
                    raise RuntimeError(f"Regenerate was refused: {answer}")
                await fake.wait_for(count(version + 1), 600, "the regenerated video")
                turnaround = time.monotonic() - started
                if len(together.requests) - images != 1:
                    raise RuntimeError("Regenerate did not make exactly one image")
                await _until_done(fake, job, member)
                edits.append(Edit(turnaround, await time_parts(settings, plan, edited_number,
                                                               run_dir / "parts")))  # fmt: skip
            # The narration is kept: each new video reused the first render's soundtrack.
            reused = len(list((data / "cache" / "soundtrack").rglob("*.m4a"))) == soundtracks
    shutil.rmtree(run_dir, ignore_errors=True)
    return EditRun("Discord Regenerate", scenes, tuple(edits), speech=False, sound_reused=reused)


async def _until_done(fake: Any, job: int, member: str, timeout: float = 60) -> None:
    """Until /status says the job is done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await fake.send_slash_command("status", {"job": job}, member=member)
        embed = (await status.wait_response(timeout=10)).data["embeds"][0]
        if {f["name"]: f["value"] for f in embed["fields"]}["State"] == "✅ done":
            return
        if loop.time() > deadline:
            raise TimeoutError(f"job {job} is not done: {embed}")
        await asyncio.sleep(0.2)  # poll interval, under the deadline above


async def _answer(click: Any) -> str:
    """What the bot answered a click: after a "thinking…" defer, or at once."""
    response = await click.wait_response(timeout=10)
    if response.type == 5:
        [followup] = await click.wait_followups(1, timeout=30)
        return str(followup.content)
    return str(response.content or "")


async def edit_runs(scenes: int, *, aspect: str, latencies: Latencies, chars: tuple[int, int],
                    workdir: Path, rounds: int) -> list[EditRun]:  # fmt: skip
    runs = [await cli_edit(scenes, aspect=aspect, latencies=latencies, chars=chars,
                           workdir=workdir, rounds=rounds)]  # fmt: skip
    runs.append(await discord_regenerate(scenes, aspect=aspect, latencies=latencies, chars=chars,
                                         workdir=workdir, rounds=rounds))  # fmt: skip
    return runs
