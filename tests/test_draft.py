"""`reelbot draft "topic"`: a chat model writes a script, reelbot's own parser reads it, and a
draft it cannot use goes back to the model once with the parser's words. Against a loopback
chat completions server that keeps to OpenAI's published contract (tests/fakes/llm.py)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from pipeline.aspect import Aspect
from pipeline.draft import draft_script
from pipeline.errors import ConfigError, DraftError, InputError, LLMError
from pipeline.script import parse_script
from tests.fakes.llm import FakeChat, Reply
from tests.fakes.server import closed_base_url

from .conftest import SettingsFactory
from .media import ffprobe
from .test_cli import FAST, reelbot, reelbot_async

GOOD = """\
# Why Cats Purr

## 1
image: a ginger cat curled up on a sunny windowsill, eyes half closed, soft morning light
Cats purr when they are happy. But that is only half of the story.

## 2
image: a veterinarian gently holding a grey cat, warm clinic light, shallow depth of field
They also purr when they are hurt or frightened, to calm themselves down.

## 3
image: close-up of a sleeping kitten pressed against its mother's fur, golden light
Some scientists think the vibration even helps their bones heal.
"""
# The parser refuses this one: scene 2 has an image prompt but nothing to say.
NO_NARRATION = GOOD.replace(
    "They also purr when they are hurt or frightened, to calm themselves down.\n", ""
)
KEY = "sk-llm-test-key-0123456789"


def llm(url: str, **extra: object) -> dict[str, object]:
    return {"base_url": url, **extra}


async def test_a_draft_is_parsed_and_written_with_the_chosen_aspect(
    make_settings: SettingsFactory,
) -> None:
    async with FakeChat([GOOD]) as chat, httpx.AsyncClient() as client:
        settings = make_settings(llm=llm(chat.base_url))
        draft = await draft_script("why cats purr", settings, client, scenes=3,
                                   aspect=Aspect.LANDSCAPE)  # fmt: skip
    assert draft.attempts == 1 and draft.first_problem is None
    assert draft.script.title == "Why Cats Purr"
    assert draft.script.aspect is Aspect.LANDSCAPE
    assert [s.image_prompt[:20] for s in draft.script.scenes] == [
        "a ginger cat curled ", "a veterinarian gentl", "close-up of a sleepi"]  # fmt: skip
    # The text is reelbot's Markdown, and reads back as the same script.
    assert draft.text.startswith("# Why Cats Purr\naspect: 16:9\n")
    assert parse_script(draft.text, filename="x.md") == draft.script
    # One request: the format explained, then the topic, the scene count and the framing.
    (request,) = chat.requests
    system, user = chat.conversation(0)
    assert (system["role"], user["role"]) == ("system", "user")
    assert "## " in system["content"] and "image: " in system["content"]
    assert "why cats purr" in user["content"] and "exactly 3" in user["content"]
    assert "horizontal" in user["content"]
    assert set(request.json) == {"model", "messages"}
    assert "Authorization" not in request.headers  # no LLM_API_KEY: no key is sent


async def test_an_unparsable_draft_is_sent_back_once_with_the_parsers_words(
    make_settings: SettingsFactory,
) -> None:
    async with FakeChat([NO_NARRATION, GOOD]) as chat, httpx.AsyncClient() as client:
        settings = make_settings(llm=llm(chat.base_url))
        draft = await draft_script("why cats purr", settings, client, scenes=3)
    assert draft.attempts == 2
    assert len(draft.script.scenes) == 3
    problem = "line 7 (scene 2): this scene has no narration"
    assert draft.first_problem is not None and problem in draft.first_problem
    # The second request carries the whole conversation: the first draft, then the problem.
    second = chat.conversation(1)
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == NO_NARRATION
    assert problem in second[3]["content"]


async def test_a_draft_unusable_twice_is_an_error_naming_the_problem(
    make_settings: SettingsFactory,
) -> None:
    async with FakeChat([NO_NARRATION]) as chat, httpx.AsyncClient() as client:
        settings = make_settings(llm=llm(chat.base_url))
        with pytest.raises(DraftError, match=r"scene 2\): this scene has no narration"):
            await draft_script("why cats purr", settings, client, scenes=3)
    assert len(chat.requests) == 2  # one retry, no more


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (GOOD.split("## 3")[0], "it has 2 scenes; exactly 3 were asked for"),
        (GOOD.replace("image: a veterinarian", "media: vet.mp4\nX: a veterinarian"),
         "scene 2 has a 'media:' line"),
        (GOOD.replace("image: close-up", "close-up"), "scene 3 has no 'image:' line"),
        (Reply(GOOD, finish_reason="length"), "the answer was cut off"),
    ],
)  # fmt: skip
async def test_a_draft_that_misses_the_request_is_sent_back(
    make_settings: SettingsFactory, answer: str | Reply, problem: str
) -> None:
    async with FakeChat([answer, GOOD]) as chat, httpx.AsyncClient() as client:
        settings = make_settings(llm=llm(chat.base_url))
        draft = await draft_script("why cats purr", settings, client, scenes=3)
    assert draft.first_problem is not None and problem in draft.first_problem
    assert problem in chat.conversation(1)[3]["content"]


async def test_a_fenced_answer_with_a_preamble_is_read_and_voices_dropped(
    make_settings: SettingsFactory,
) -> None:
    fenced = "Here is your script:\n\n```markdown\n" + GOOD.replace(
        "## 1\n", "## 1\nvoice: fable\nseed: 7\n"
    ) + "```\nEnjoy!\n"  # fmt: skip
    async with FakeChat([fenced]) as chat, httpx.AsyncClient() as client:
        settings = make_settings(llm=llm(chat.base_url))
        draft = await draft_script("why cats purr", settings, client, scenes=3)
    assert draft.attempts == 1
    assert draft.script.scenes[0].voice is None and draft.script.scenes[0].seed is None
    assert "Enjoy" not in draft.text and "```" not in draft.text


async def test_without_a_base_url_drafting_says_what_to_configure(
    make_settings: SettingsFactory,
) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ConfigError, match=r"set \[llm\] base_url"):
            await draft_script("cats", make_settings(), client)


async def test_bad_topics_and_counts_are_refused_before_any_request(
    make_settings: SettingsFactory,
) -> None:
    async with FakeChat([GOOD]) as chat, httpx.AsyncClient() as client:
        settings = make_settings(llm=llm(chat.base_url), limits={"max_scenes": 10})
        with pytest.raises(InputError, match="the topic is empty"):
            await draft_script(" \x1b[31m ", settings, client)
        with pytest.raises(InputError, match="1 to 10 scenes"):
            await draft_script("cats", settings, client, scenes=11)
        with pytest.raises(InputError, match="at most 500"):
            await draft_script("cats " * 200, settings, client)
    assert chat.requests == []


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "it wants a key: set LLM_API_KEY"),
        (404, "has no model 'gpt-4o-mini' or no chat completions"),
        (429, "rate limiting or out of credit"),
        (503, "refused the request (HTTP 503"),
    ],
)
async def test_server_refusals_are_said_in_words(
    make_settings: SettingsFactory, status: int, words: str
) -> None:
    async with FakeChat([GOOD], status=status) as chat, httpx.AsyncClient() as client:
        settings = make_settings(llm=llm(chat.base_url, max_attempts=2))
        with pytest.raises(LLMError, match=re.escape(words)):
            await draft_script("cats", settings, client)
    # A server error is tried again; a refusal is not.
    assert len(chat.requests) == (2 if status >= 500 else 1)


async def test_an_unreachable_server_is_one_line(make_settings: SettingsFactory) -> None:
    settings = make_settings(llm=llm(closed_base_url(), max_attempts=1))
    async with httpx.AsyncClient() as client:
        with pytest.raises(LLMError, match=r"could not be reached \(\[llm\] base_url\)"):
            await draft_script("cats", settings, client)


# ---------------------------------------------------------------- the command


async def test_reelbot_draft_writes_a_script_that_renders(tmp_path: Path) -> None:
    out = tmp_path / "cats.md"
    async with FakeChat([NO_NARRATION, GOOD], expected_key=KEY) as chat:
        env = {"REELBOT_LLM__BASE_URL": chat.base_url, "LLM_API_KEY": KEY + "\n"}
        code, output = await reelbot_async(
            "-vv", "draft", "why cats purr", "--scenes", "3", "--aspect", "1:1", "-o", str(out),
            data=tmp_path / "data", **env,
        )  # fmt: skip
        assert code == 0, output
        assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in chat.requests)
    assert KEY not in output and KEY[:12] not in output  # -vv logs requests, never the key
    assert "the first draft was sent back" in output and "scene 2" in output
    assert f"{out}: 3 scenes, 1:1" in output
    script = parse_script(out.read_bytes(), filename=out.name)
    assert len(script.scenes) == 3 and script.aspect is Aspect.SQUARE

    # Drafted, then rendered as it is.
    video = tmp_path / "cats.mp4"
    done = reelbot("render", str(out), "-o", str(video), data=tmp_path / "data", **FAST)
    assert done.returncode == 0, done.stderr
    probe = ffprobe(video)
    assert (probe.stream("video")["width"], probe.stream("video")["height"]) == (1080, 1080)
    assert probe.duration > 3 * 2.0

    # The script is not overwritten without --force.
    async with FakeChat([GOOD]) as chat:
        code, output = await reelbot_async(
            "draft", "cats", "--scenes", "3", "-o", str(out), data=tmp_path / "data",
            REELBOT_LLM__BASE_URL=chat.base_url,
        )  # fmt: skip
        assert chat.requests == []
    assert code == 2 and f"{out} exists" in output and "--force" in output


async def test_reelbot_draft_prints_the_script_without_an_output_file(tmp_path: Path) -> None:
    async with FakeChat([GOOD]) as chat:
        url = chat.base_url
        code, output = await reelbot_async("draft", "why cats purr", "--scenes", "3",
                                           data=tmp_path, REELBOT_LLM__BASE_URL=url)  # fmt: skip
    assert code == 0, output
    assert "# Why Cats Purr\naspect: 9:16\n\n## 1\nimage: a ginger cat" in output


def test_reelbot_draft_without_llm_config_is_one_line(tmp_path: Path) -> None:
    done = reelbot("draft", "why cats purr", data=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 2 and "set [llm] base_url" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


async def test_reelbot_draft_twice_unusable_exits_1_in_one_line(tmp_path: Path) -> None:
    async with FakeChat([NO_NARRATION]) as chat:
        code, output = await reelbot_async("draft", "cats", "--scenes", "3", data=tmp_path,
                                           REELBOT_LLM__BASE_URL=chat.base_url)  # fmt: skip
    assert code == 1
    assert "could not be used, even after it was told why" in output
    assert "scene 2): this scene has no narration" in output
    assert "Traceback" not in output
