"""Upstream faults survived: a flaky image API still yields a complete video, one request at a
time, with a bounded number of retries (429s are bounded by time instead)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from tests.fakes.together import FakeTogether

from .conftest import SettingsFactory
from .media import ffprobe

SCENES = 8
SCRIPT = "\n".join(f"## {n}\nimage: picture {n}\nScene {n}." for n in range(1, SCENES + 1))


@pytest.mark.parametrize("retry_after", [None, 0.05])
async def test_a_flaky_image_api_still_gives_a_complete_video(
    make_settings: SettingsFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    retry_after: float | None,
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "k")
    async with FakeTogether(
        fault_rate=0.3, fault_kinds=[429, 500, 502, 503, "hang"], retry_after=retry_after,
        seed=11, hang_seconds=5,
    ) as fake:  # fmt: skip
        settings = make_settings(images={
            "provider": "together", "base_url": fake.base_url, "timeout": 0.4,
            "backoff_base": 0.02, "backoff_max": 0.1, "max_attempts": 8,
        })  # fmt: skip
        plan = plan_render(parse_script(SCRIPT), settings)
        result = await render_plan(plan, settings, tmp_path / "v.mp4")

    faults = [r for r in fake.requests if r.status != 200]
    assert faults, "the fake injected no fault; the test proves nothing"
    assert fake.overlaps == 0 and fake.max_in_flight == 1
    assert fake.successes == SCENES
    # Attempts other than 429s are bounded by max_attempts per image; 429s by time
    # ([images] rate_limit_wait), not by count.
    per_prompt: dict[str, int] = {}
    for request in fake.requests:
        if request.json is None or request.status == 429:  # hung up early; rate-limited
            continue
        per_prompt[request.json["prompt"]] = per_prompt.get(request.json["prompt"], 0) + 1
    assert max(per_prompt.values()) <= 8
    assert len(result.scenes) == SCENES
    probe = ffprobe(tmp_path / "v.mp4")
    assert abs(probe.duration - sum(s.clip_seconds for s in result.scenes)) < 0.1 * SCENES
