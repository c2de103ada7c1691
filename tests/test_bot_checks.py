"""Checks, the central error words, intents and start-up refusals (the rate limits are in
tests/test_admission.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from discord import app_commands

from bot.__main__ import RedactToken, main
from bot.app import GENERIC_FAILURE, bot_intents, user_message
from bot.cogs.render import RenderCog
from bot.errors import QueueFull, Refusal
from pipeline.errors import ScriptError

ROOT = Path(__file__).resolve().parents[1]


def test_render_checks_run_allowlists_first_and_the_rate_limit_last() -> None:
    names = [check.__qualname__.split(".")[0] for check in RenderCog.render.checks]
    assert names == ["check_render_allowed", "check_bot_can_post", "check_render_rate_limit"]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            ScriptError("this scene has no narration", line=4, scene=2),
            "That script can't be rendered. Line 4 (scene 2): this scene has no narration.",
        ),
        (QueueFull("the render queue is full (20 jobs)"), "The render queue is full (20 jobs)."),
        (Refusal("You need one of these roles."), "You need one of these roles."),
        (app_commands.NoPrivateMessage(), "works in a server"),
    ],
)
def test_known_errors_become_short_answers(error: Exception, words: str) -> None:
    assert words in (user_message(error) or "")


def test_unknown_errors_are_not_shown_to_users() -> None:
    assert user_message(KeyError("internal detail")) is None
    assert "logged" in GENERIC_FAILURE and "Traceback" not in GENERIC_FAILURE


def test_no_privileged_intent_is_asked_for() -> None:
    intents = bot_intents()
    assert intents.guilds
    assert not (intents.members or intents.presences or intents.message_content)


def test_the_token_is_never_logged() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "token is %s", ("s3cr3t.t0k3n",), None
    )
    assert RedactToken("s3cr3t.t0k3n").filter(record)
    assert record.getMessage() == "token is [DISCORD_TOKEN]"


def test_without_a_token_the_bot_exits_2_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(ROOT / "config.toml.example")]) == 2
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err


def test_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[discord]\nedit_interval = 0\n")
    assert main(["--config", str(config)]) == 2
    assert "discord.edit_interval" in capsys.readouterr().err
