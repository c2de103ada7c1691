"""Run the real bot as its own process (`python -m bot`) against the loopback fakes.

    fake Discord (in this process) ◄── REST + gateway ──┐
    FakeTogether / FakeSpeech (in this process) ◄─ HTTP ─┤  python -m bot --config <tmp>
                                                         └─ its own process group

The bot runs in a new session, so stopping it (SIGTERM, then SIGKILL to the whole group) also
ends any ffmpeg it started: no orphans. Its stderr goes to a file, printed when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import SECRET_VARS
from tests.fakes.discord import FakeDiscord, InjectedInteraction, RecordedMessage, Revision

ROOT = Path(__file__).resolve().parents[1]
# Small, fast renders: few frames, short pads; the other engineers' heavier stages off.
FAST_VIDEO_ENV = {
    "REELBOT_VIDEO__FPS": "10",
    "REELBOT_VIDEO__PAD_SECONDS": "0.2",
    "REELBOT_CAPTIONS__ENABLED": "false",
    "REELBOT_SOUND__NORMALIZE": "false",
}


def toml_text(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A TOML file from plain values (str, bool, int, float and lists of them)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, Sequence):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML")

    lines: list[str] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {value(v)}" for key, v in keys.items())
        lines.append("")
    return "\n".join(lines)


def bot_env(
    fake: FakeDiscord,
    *,
    together_url: str,
    speech_url: str,
    data_dir: Path,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The bot's environment: this one minus any developer keys/overrides, plus the fakes."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("REELBOT_") and k not in SECRET_VARS
    }
    env.update(fake.env())
    env.update(FAST_VIDEO_ENV)
    env.update(
        {
            "TOGETHER_API_KEY": "test-together-key",
            "REELBOT_IMAGES__PROVIDER": "together",
            "REELBOT_IMAGES__BASE_URL": together_url,
            "REELBOT_TTS__PROVIDER": "openai",
            "REELBOT_TTS__BASE_URL": speech_url,
            "REELBOT_STORAGE__DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


class BotProcess:
    def __init__(
        self,
        fake: FakeDiscord,
        config: Path,
        env: Mapping[str, str],
        log: Path,
        args: Sequence[str] = (),
    ) -> None:
        self.fake = fake
        self.config = config
        self.args = list(args)
        self.env = dict(env)
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def start(self, timeout: float = 60) -> None:
        """Start it and wait until it has synced its commands and received READY."""
        state = self.fake.state
        ready, syncs = state.ready_sent, len(state.command_syncs)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "--config", str(self.config), *self.args,
                env=self.env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        await self.fake.wait_for(
            lambda: self.exited or (state.ready_sent > ready and len(state.command_syncs) > syncs),
            timeout,
            "the bot to sync its commands and connect",
        )
        if self.process.returncode is not None:
            raise RuntimeError(f"the bot exited ({self.process.returncode}):\n{self.stderr()}")

    async def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL to the whole group if it lingers."""
        if self.process is None:
            return None
        if not self.exited:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.process.wait()
        self._kill_group()
        await self.process.wait()
        return self.process.returncode

    async def kill9(self) -> None:
        """`kill -9` of the bot's process group: the bot and its ffmpeg children, at once,
        as when the machine or container dies."""
        self._kill_group()
        assert self.process is not None
        await self.process.wait()

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, config: Path, env: Mapping[str, str], log: Path, args: Sequence[str] = ()
) -> AsyncIterator[BotProcess]:
    bot = BotProcess(fake, config, env, log, args)
    try:
        await bot.start()
        yield bot
    except BaseException:
        print(f"---- bot stderr ({log}) ----\n{bot.stderr()}")
        raise
    finally:
        await bot.stop()


# ------------------------------------------------------------ reading what the bot posted


@dataclass
class SceneRow:
    """One scene line of a progress embed: its three stage symbols (audio, image, clip)."""

    number: int
    symbols: tuple[str, str, str]


SCENE_ROW = re.compile(r"^`\s*(\d+)` (\S+) (\S+) (\S+)")
DONE_SYMBOLS = ("✅", "☑️")


def embed_of(revision: Revision) -> dict[str, Any]:
    embeds = revision.body.get("embeds") or [{}]
    return dict(embeds[0])


def scene_rows(revision: Revision) -> dict[int, SceneRow]:
    description = str(embed_of(revision).get("description", ""))
    rows = {}
    for line in description.splitlines():
        match = SCENE_ROW.match(line)
        if match:
            number = int(match[1])
            rows[number] = SceneRow(number, (match[2], match[3], match[4]))
    return rows


def all_done(revision: Revision) -> bool:
    rows = scene_rows(revision)
    return bool(rows) and all(s in DONE_SYMBOLS for r in rows.values() for s in r.symbols)


def job_id_of(handle: InjectedInteraction) -> int:
    text = " ".join(m.content for m in handle.followups)
    match = re.search(r"job #(\d+)", text)
    assert match, f"no job number in {text!r}"
    return int(match[1])


def progress_messages(fake: FakeDiscord, channel_id: int, job_id: int) -> list[RecordedMessage]:
    """The bot's progress message(s) for a job (more than one if one had to be replaced)."""
    return [
        m
        for m in fake.messages.get(channel_id, [])
        if m.interaction_id is None
        and any(f"job #{job_id} ·" in str(e.get("footer", {}).get("text", "")) for e in m.embeds)
    ]


def replies_to(fake: FakeDiscord, channel_id: int, message_id: int) -> list[RecordedMessage]:
    return [
        m
        for m in fake.messages.get(channel_id, [])
        if (m.revisions[0].body.get("message_reference") or {}).get("message_id")
        in (message_id, str(message_id))
    ]


async def delivered_or_failed(
    fake: FakeDiscord, handle: InjectedInteraction, timeout: float = 90
) -> str:
    """Wait until the job's progress message says Done or Failed; return its whole embed
    (description and fields) as text."""
    await handle.wait_followups(1, timeout=20)
    job_id = job_id_of(handle)

    def final_text() -> str | None:
        for progress in progress_messages(fake, handle.channel_id, job_id):
            embed = embed_of(progress.revisions[-1])
            text = "\n".join(
                [str(embed.get("description", ""))]
                + [f"{f.get('name', '')}\n{f.get('value', '')}" for f in embed.get("fields", [])]
            )
            if "**Done**" in text or "**Failed**" in text:
                return text
        return None

    text: str = await fake.wait_for(final_text, timeout, f"job {job_id} to finish")
    return text
