"""Image slots across renders and keys (issue 18, items 1 and 2): waiting image requests are
served in job order; each key of `[images] keys` has its own slots; a key answering 401 or 402
is taken out, by its variable's name, and the request goes to another key.

The fake Together counts concurrency per key (an overlap with the same key is a 429) and
records every request's interval and key; its `gate` holds the requests in flight until the
test has seen what it waits for, so nothing here depends on timing."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.store import Job
from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError, SceneFailed
from pipeline.image_slot import ImageSlot, LocalKeys, image_keys
from pipeline.images import make_images
from pipeline.job_order import OrderedSlots, in_job_order
from pipeline.logs import RedactSecrets
from pipeline.plan import plan_render
from pipeline.render import Renderer, RenderResult, render_plan
from pipeline.script import parse_script
from pipeline.tts import make_tts
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.runner_harness import Clock, Recorder, runners, settings_with
from tests.runner_harness import request as job_request

from .conftest import SettingsFactory
from .media import ffprobe

SECRETS = {"TOGETHER_KEY_A": "tgp-key-a-0123456789abcdef",
           "TOGETHER_KEY_B": "tgp-key-b-fedcba9876543210"}  # fmt: skip
A, B = SECRETS


def script(tag: str, scenes: int) -> str:
    body = "".join(f"## {n}\nimage: {tag} {n}\nWord {n}.\n" for n in range(1, scenes + 1))
    return f"# {tag}\n{body}"


async def wait_until(predicate: Callable[[], bool], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.01)  # poll interval, under the deadline above


@pytest.fixture
def keyed_settings(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    for variable, secret in SECRETS.items():
        monkeypatch.setenv(variable, secret)

    def factory(fake: FakeTogether, **images: Any) -> Settings:
        return make_settings(
            images={"provider": "together", "base_url": fake.base_url, "keys": [A],
                    "backoff_base": 0.05, "backoff_max": 0.2, **images},
            video={"fps": 10, "pad_seconds": 0.2}, captions={"enabled": False},
            sound={"normalize": False},
        )  # fmt: skip

    return factory


def prompts(fake: FakeTogether) -> list[str]:
    return [r.json["prompt"] for r in fake.requests]


def used(fake: FakeTogether, variable: str) -> list[str]:
    return [r.json["prompt"] for r in fake.requests if fake.key_of(r) == SECRETS[variable]]


# ---------------------------------------------------------------- job order


async def test_waiting_image_requests_are_served_in_job_order(
    keyed_settings: Any, tmp_path: Path
) -> None:
    """The later job asks first and its first image is in flight; the earlier job asks next.
    Every waiting request of the earlier job goes before the later job's."""
    async with FakeTogether(keys={SECRETS[A]: 200}) as fake, httpx.AsyncClient() as client:
        fake.gate = asyncio.Event()
        settings = keyed_settings(fake)
        slot = ImageSlot.for_settings(settings)  # one per process, as in the bot
        keys = slot.keys
        assert isinstance(keys, LocalKeys)

        def render(tag: str, order: int) -> asyncio.Task[Any]:
            renderer = Renderer(settings, tts=make_tts(settings, client),
                                images=make_images(settings, client), image_slot=slot,
                                order=order)  # fmt: skip
            plan = plan_render(parse_script(script(tag, 3)), settings)
            return asyncio.create_task(renderer.render(plan, tmp_path / f"{tag}.mp4"))

        later = render("later", order=2)
        await wait_until(lambda: fake.in_flight == 1)  # the later job's scene 1, held
        earlier = render("earlier", order=1)
        await wait_until(lambda: keys.waiting == 2 + 3)  # every other request waits
        fake.gate.set()
        await asyncio.gather(later, earlier)

    assert prompts(fake) == ["later 1", "earlier 1", "earlier 2", "earlier 3", "later 2",
                             "later 3"]  # fmt: skip
    assert fake.overlaps == 0 and fake.max_in_flight == 1
    assert fake.overlapping(SECRETS[A]) == []


async def test_encoder_slots_are_served_in_job_order() -> None:
    slots = OrderedSlots(1)
    served: list[int] = []
    await slots.acquire()  # busy: everyone else waits

    async def encode(order: int) -> None:
        with in_job_order(order):
            async with slots:
                served.append(order)

    waiting = [asyncio.create_task(encode(order)) for order in (3, 1, 2, 1)]
    await wait_until(lambda: slots.waiting == 4)
    slots.release()
    await asyncio.gather(*waiting)
    assert served == [1, 1, 2, 3]
    assert not slots.locked()


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize("per_key", [1, 2])
async def test_two_keys_are_used_at_once_within_their_slots(
    keyed_settings: Any, tmp_path: Path, per_key: int
) -> None:
    keys = {SECRETS[A]: 200, SECRETS[B]: 200}
    async with FakeTogether(keys=keys, concurrency=per_key) as fake:
        fake.gate = asyncio.Event()
        settings = keyed_settings(fake, keys=[A, B], max_concurrency=per_key)
        plan = plan_render(parse_script(script("pair", 6)), settings)
        render = asyncio.create_task(render_plan(plan, settings, tmp_path / "pair.mp4"))
        await wait_until(lambda: fake.in_flight == 2 * per_key)  # every slot of both keys
        fake.gate.set()
        result = await render
    # The fake answers 429 to a request past `per_key` at once with the same key: none.
    assert fake.overlaps == 0
    assert fake.max_in_flight_by_key == {SECRETS[A]: per_key, SECRETS[B]: per_key}
    assert sorted(used(fake, A) + used(fake, B)) == [f"pair {n}" for n in range(1, 7)]
    assert all(r.status == 200 for r in fake.requests)
    assert abs(ffprobe(tmp_path / "pair.mp4").duration - result.duration) < 0.05


@pytest.mark.parametrize("status", [401, 402])
async def test_a_refused_key_is_taken_out_and_the_render_ends_on_the_other(
    keyed_settings: Any, tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeTogether(keys={SECRETS[A]: status, SECRETS[B]: 200}) as fake:
        settings = keyed_settings(fake, keys=[A, B])
        plan = plan_render(parse_script(script("spare", 4)), settings)
        with caplog.at_level(logging.WARNING, logger="pipeline.image_slot"):
            result = await render_plan(plan, settings, tmp_path / "spare.mp4")
    assert len(used(fake, A)) == 1  # asked once, then taken out
    assert sorted(used(fake, B)) == [f"spare {n}" for n in range(1, 5)]
    assert abs(ffprobe(tmp_path / "spare.mp4").duration - result.duration) < 0.05
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert f"key in {A} " in warning and f"(HTTP {status})" in warning
    assert f"{A} is taken out" in warning and "1 key left" in warning
    assert all(secret not in warning for secret in SECRETS.values())


async def test_when_every_key_is_refused_the_render_fails_naming_each(
    keyed_settings: Any, tmp_path: Path
) -> None:
    async with FakeTogether(keys={SECRETS[A]: 401, SECRETS[B]: 402}) as fake:
        settings = keyed_settings(fake, keys=[A, B])
        plan = plan_render(parse_script(script("broke", 3)), settings)
        with pytest.raises(SceneFailed) as caught:
            await render_plan(plan, settings, tmp_path / "broke.mp4")
    said = str(caught.value)
    assert said.startswith("scene 1, image: no image key can be used: ")
    assert f"rejected the API key in {A} (HTTP 401)" in said
    assert f"the key in {B} has no credit left (HTTP 402)" in said
    assert all(secret not in said for secret in SECRETS.values())
    assert len(fake.requests) == 2  # each key asked once; nothing more was sent
    assert not (tmp_path / "broke.mp4").exists()


async def test_one_refused_key_fails_the_render_in_its_own_words(
    keyed_settings: Any, tmp_path: Path
) -> None:
    async with FakeTogether(keys={SECRETS[A]: 401}) as fake:
        settings = keyed_settings(fake)
        plan = plan_render(parse_script(script("alone", 2)), settings)
        with pytest.raises(SceneFailed) as caught:
            await render_plan(plan, settings, tmp_path / "alone.mp4")
    assert str(caught.value) == (f"scene 1, image: Together.ai rejected the API key in {A} "
                                 f"(HTTP 401); check {A}")  # fmt: skip
    assert len(fake.requests) == 1


# ---------------------------------------------------------------- configuration


def test_keys_name_variables_never_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pasted = "tgp_v1_0123456789abcdefghij"
    config = tmp_path / "reelbot.toml"
    config.write_text(f'[images]\nkeys = ["{A}", "{pasted}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "images.keys: entry 2 is not the name of an environment variable" in str(caught.value)
    assert pasted not in str(caught.value)

    config.write_text(f'[images]\nkeys = ["{A}", "{A}"]\n')
    with pytest.raises(ConfigError, match=r"images\.keys: a variable is listed twice"):
        load_settings(config)


def test_a_key_variable_that_is_not_set_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(A, SECRETS[A])
    monkeypatch.delenv(B, raising=False)
    config = tmp_path / "reelbot.toml"
    config.write_text(f'[images]\nprovider = "together"\nkeys = ["{A}", "{B}"]\n')
    settings = load_settings(config)
    with pytest.raises(ConfigError) as caught:
        ImageSlot.for_settings(settings)
    assert str(caught.value) == f"[images] keys names {B}, but {B} is not set in the environment"


# ---------------------------------------------------------------- the bot's queue


class _Log(Recorder):
    """Records the order in which jobs start and finish."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    async def started(self, job: Job) -> None:
        await super().started(job)
        self.log.append(f"started {job.id}")

    async def finished(self, job: Job, result: RenderResult) -> bool:
        self.log.append(f"finished {job.id}")
        return await super().finished(job, result)


async def test_queued_jobs_render_two_at_a_time_without_overlapping_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", SECRETS[A])
    tags = ("first", "second", "third")
    async with FakeTogether(latency=0.2, keys={SECRETS[A]: 200}) as fake, FakeSpeech() as speech:
        settings = settings_with(tmp_path / "data", fake, speech)
        assert settings.queue.max_concurrent_renders == 2  # the default
        recorder = _Log()
        async with runners(settings, tmp_path / "bot.sqlite3", Clock(),
                           recorder=recorder) as (runner,):  # fmt: skip
            jobs = [await runner.submit(job_request(tag, user=n, scenes=3))
                    for n, tag in enumerate(tags, 1)]  # fmt: skip
            await runner.start()
            await wait_until(lambda: all(recorder.outcomes.get(j.id) == "finished" for j in jobs))
    first, second, third = (j.id for j in jobs)
    # The first two ran at once; the third waited for a free render slot.
    assert recorder.log.index(f"started {second}") < recorder.log.index(f"finished {first}")
    assert recorder.log.index(f"started {third}") > recorder.log.index(f"finished {first}")
    # Never two requests at once with the one key, by the fake's recorded intervals.
    assert fake.overlapping(SECRETS[A]) == [] and fake.overlaps == 0
    assert fake.max_in_flight_by_key[SECRETS[A]] == 1
    # Served in job order: whichever job asked first had its first image made first; from
    # then on, every request of an earlier job went before those of a later one.
    asked = [r.json["prompt"].split()[0] for r in fake.requests]
    assert sorted(asked) == sorted(tag for tag in tags for _ in range(3))
    assert asked[1:] == sorted(asked[1:], key=tags.index)


def test_keys_read_from_the_environment_are_masked_in_the_log(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logging starts before the settings are read: the keys found then are masked too."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets([]))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        for variable, secret in SECRETS.items():
            monkeypatch.setenv(variable, secret)
        settings = make_settings(images={"provider": "together", "keys": [A, B]})
        assert [key.name for key in image_keys(settings)] == [A, B]
        logging.getLogger("anything").warning("sent %s and %s", SECRETS[A], SECRETS[B])
    finally:
        root.removeHandler(handler)
    assert stream.getvalue() == f"sent [{A}] and [{B}]\n"
