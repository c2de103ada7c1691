"""Secrets stay secret: a whole bot render, one that fails on the image API key, at DEBUG
logging — neither the bot token nor the API key appears in any log line or anything posted."""

from __future__ import annotations

import json
from pathlib import Path

from tests.botproc import bot_env, delivered_or_failed, running_bot, toml_text
from tests.fakes.discord import AttachmentSpec, ChannelSpec, FakeDiscord, GuildSpec
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether

GUILD = GuildSpec(name="Secrets", channels=[ChannelSpec("general")])
SCRIPT = "# Keys\n## 1\nimage: a key\nA small scene.\n## 2\nimage: a lock\nAnother one.\n"
TOGETHER_KEY = "tgp-super-secret-key-0042"


async def test_no_secret_in_logs_or_messages_at_debug_level(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml_text({"discord": {"guild_ids": [GUILD.id], "edit_interval": 0.5}}))
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(expected_key=TOGETHER_KEY) as together,
        FakeSpeech() as speech,
    ):
        env = bot_env(
            fake,
            together_url=together.base_url,
            speech_url=speech.base_url,
            data_dir=tmp_path / "data",
            extra={"TOGETHER_API_KEY": TOGETHER_KEY},
        )
        log = tmp_path / "bot.log"
        async with running_bot(fake, config, env, log, args=["--verbose"]) as bot:
            ok = await fake.send_slash_command(
                "render", {"script": AttachmentSpec("keys.md", SCRIPT.encode())}, channel="general"
            )
            assert "Done" in await delivered_or_failed(fake, ok)
            together.expected_key = "another-key"  # the next render's key is refused: 401
            other = AttachmentSpec("keys2.md", SCRIPT.replace("lock", "door").encode())
            refused = await fake.send_slash_command("render", {"script": other}, channel="general")
            assert "rejected the API key" in await delivered_or_failed(fake, refused)
            await bot.stop()
        lines = log.read_text(errors="replace").splitlines()
        posted = json.dumps(
            [r.body for ms in fake.messages.values() for m in ms for r in m.revisions],
            ensure_ascii=False, default=str,
        )  # fmt: skip
    assert sum(" DEBUG " in line for line in lines) > 20, "DEBUG logging was not on"
    for secret in (fake.token, TOGETHER_KEY):
        assert not [line for line in lines if secret in line]
        assert secret not in posted
