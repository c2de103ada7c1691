"""The time-left estimator (pipeline/estimate.py): its critical path, its floor while images are
ahead, and the samples a render gives it. The accuracy on real renders is
tests/test_estimate_renders.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.estimate import Estimator, Rates, SceneShape, Shape, Speed, measure, median_rates
from pipeline.events import JobDone, JobStarted, ProgressEvent, SceneEvent, Stage, Status

RATES = Rates(image=2.0, speech=0.001, voice=0.05, encode=0.5, finish=0.7)
CHARS = (40, 60, 20, 80)


def shape(*, images: tuple[bool, ...] = (True,) * 4, encoders: int = 1, join: bool = True) -> Shape:
    pairs = enumerate(zip(CHARS, images, strict=True), 1)
    scenes = tuple(SceneShape(n, c, i) for n, (c, i) in pairs)
    return Shape(scenes, join=join, encoders=encoders)


def ideal_events(rates: Rates, plan: Shape) -> list[ProgressEvent]:
    """A render that goes exactly as the model says (one encoder), in time order."""
    events: list[ProgressEvent] = [JobStarted(0.0, "t", len(plan.scenes))]
    total_chars = sum(s.chars for s in plan.scenes)
    speech_end = total_chars * rates.speech
    slot = 0.0
    ready: dict[int, float] = {}
    for scene in plan.scenes:
        n = scene.number
        events.append(SceneEvent(0.0, n, Stage.AUDIO, Status.STARTED))
        events.append(SceneEvent(speech_end, n, Stage.AUDIO, Status.DONE,
                                 seconds=scene.chars * rates.voice))  # fmt: skip
        if scene.image:
            events.append(SceneEvent(slot, n, Stage.IMAGE, Status.STARTED))
            slot += rates.image
            events.append(SceneEvent(slot, n, Stage.IMAGE, Status.DONE))
            ready[n] = max(slot, speech_end)
        else:
            events.append(SceneEvent(0.0, n, Stage.IMAGE, Status.CACHED))
            ready[n] = speech_end
    encoder = 0.0  # clips take the encoder in the order they become ready
    for scene in sorted(plan.scenes, key=lambda s: ready[s.number]):
        n, audio = scene.number, scene.chars * rates.voice
        start = max(ready[n], encoder)
        encoder = start + audio * rates.encode
        events.append(SceneEvent(start, n, Stage.CLIP, Status.STARTED))
        events.append(SceneEvent(encoder, n, Stage.CLIP, Status.DONE, seconds=audio))
    video = sum(s.chars for s in plan.scenes) * rates.voice
    events.append(SceneEvent(encoder, 0, Stage.JOIN, Status.STARTED))
    end = encoder + rates.finish
    events.append(SceneEvent(end, 0, Stage.JOIN, Status.DONE, seconds=video))
    events.append(JobDone(end, Path("v.mp4"), video))
    return sorted(events, key=lambda e: e.t)


@pytest.mark.parametrize("images", [(True,) * 4, (True, False, True, False)])
def test_a_render_that_goes_as_measured_is_estimated_exactly(images: tuple[bool, ...]) -> None:
    plan = shape(images=images)
    events = ideal_events(RATES, plan)
    end = events[-1].t
    estimator = Estimator(RATES, plan)
    assert estimator.remaining(0.0) == pytest.approx(end)
    for event in events:
        estimator.see(event)
        assert estimator.remaining(event.t) == pytest.approx(end - event.t, abs=1e-9), event


def test_while_images_are_ahead_the_time_left_is_at_least_their_latency() -> None:
    plan = shape()
    estimator = Estimator(RATES, plan)
    estimator.see(SceneEvent(0.0, 1, Stage.IMAGE, Status.STARTED))
    for n in range(1, 5):
        estimator.see(SceneEvent(0.0, n, Stage.AUDIO, Status.STARTED))
        estimator.see(SceneEvent(0.1, n, Stage.AUDIO, Status.DONE, seconds=1.0))
    # The first image is late (started 10 s ago, the latency is 2 s): three are still to come.
    assert estimator.images_ahead() == 4
    assert estimator.remaining(10.0) >= 3 * RATES.image
    # An image that has taken longer than usual is not "done in 0 s".
    estimator.see(SceneEvent(10.0, 1, Stage.IMAGE, Status.DONE))
    estimator.see(SceneEvent(10.0, 2, Stage.IMAGE, Status.STARTED))
    assert estimator.images_ahead() == 3
    assert estimator.remaining(10.0) >= 3 * RATES.image


def test_more_encoders_finish_the_clips_sooner() -> None:
    slow_encode = Rates(image=0.1, speech=0.001, voice=0.05, encode=4.0, finish=1.0)
    one = Estimator(slow_encode, shape(encoders=1)).remaining(0.0)
    two = Estimator(slow_encode, shape(encoders=2)).remaining(0.0)
    assert two == pytest.approx(29.2) and one == pytest.approx(41.2)  # 40 s of encoding


def test_a_review_round_stops_at_the_clips() -> None:
    plan = shape()
    with_join = Estimator(RATES, plan).remaining(0.0)
    without = Estimator(RATES, shape(join=False)).remaining(0.0)
    assert with_join - without == pytest.approx(RATES.finish)


def test_once_the_join_has_started_only_the_join_is_left() -> None:
    plan = shape()
    events = ideal_events(RATES, plan)
    estimator = Estimator(RATES, plan)
    join = next(e for e in events if isinstance(e, SceneEvent) and e.stage is Stage.JOIN)
    for event in events[: events.index(join) + 1]:
        estimator.see(event)
    assert estimator.remaining(join.t) == pytest.approx(RATES.finish)
    assert estimator.remaining(join.t + 100) == 0.0


def test_a_render_gives_back_the_rates_it_went_at() -> None:
    plan = shape()
    samples = measure(ideal_events(RATES, plan), plan)
    assert len(samples[Speed.IMAGE]) == 4
    assert len(samples[Speed.ENCODE]) == 4
    assert len(samples[Speed.SPEECH]) == 1
    rates = median_rates(samples)
    for speed in Speed:
        assert rates.of(speed) == pytest.approx(RATES.of(speed)), speed


def test_cached_work_gives_no_samples_and_unmeasured_stages_keep_their_defaults() -> None:
    plan = shape()
    events: list[ProgressEvent] = [JobStarted(0.0, "t", 4)]
    for n, chars in enumerate(CHARS, 1):
        events += [
            SceneEvent(0.0, n, Stage.AUDIO, Status.CACHED, seconds=chars * 0.07),
            SceneEvent(0.0, n, Stage.IMAGE, Status.CACHED),
            SceneEvent(0.0, n, Stage.CLIP, Status.CACHED, seconds=chars * 0.07),
        ]
    samples = measure(events, plan)
    assert set(samples) == {Speed.VOICE}  # the voice's pace is known from a cached audio
    rates = median_rates(samples)
    assert rates.voice == pytest.approx(0.07)
    assert rates.image == Rates().image


def test_the_median_ignores_one_outlier() -> None:
    rates = median_rates({Speed.IMAGE: [2.0, 2.1, 1.9, 60.0, 2.0]})
    assert rates.image == pytest.approx(2.0)
