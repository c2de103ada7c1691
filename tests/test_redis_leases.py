"""The image keys' slots as leases in a real redis-server (bot/remote/image_lease.py), and a
worker that cannot reach Redis."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from arq.connections import ArqRedis

from bot.config import RedisConfig
from bot.remote.image_lease import ImageLeases, RedisKeys
from bot.remote.orders import connect
from pipeline.config import ImagesConfig
from pipeline.errors import ImageError, KeyRefused, ReelbotError
from pipeline.image_slot import ImageKey, ImageSlot, wait_before_retry
from tests.botproc import toml_text
from tests.workerproc import WorkerProcess, free_port, running_redis

KEY = ImageKey("TOGETHER_API_KEY", "tok-secret-1")
LEASE = "reelbot:image-lease:TOGETHER_API_KEY"


def slot_on(redis: ArqRedis, keys: list[ImageKey] | None = None, *, ttl: float,
            per_key: int = 1) -> ImageSlot:  # fmt: skip
    """One 'worker's image slot: its keys' slots as leases in `redis`."""
    pool = RedisKeys(redis, keys or [KEY], per_key, ttl=ttl)
    return ImageSlot(pool, timeout=ImagesConfig().timeout)


@pytest_asyncio.fixture
async def redis(tmp_path: Path) -> AsyncIterator[ArqRedis]:
    async with running_redis(tmp_path / "redis") as server:
        connection = await connect(RedisConfig(url=server.url), "the test")
        try:
            yield connection
        finally:
            await connection.aclose(close_connection_pool=True)


async def test_one_holder_per_slot_across_slots_sharing_redis(redis: ArqRedis) -> None:
    """Three 'workers' (three slots on one Redis) never run two images at once."""
    slots = [slot_on(redis, ttl=5) for _ in range(3)]
    running: list[int] = []
    most = 0

    async def image(n: int, key: ImageKey) -> int:
        nonlocal most
        assert key.variable == "TOGETHER_API_KEY"
        running.append(n)
        most = max(most, len(running))
        await asyncio.sleep(0.02)
        running.remove(n)
        return n

    made = await asyncio.gather(
        *(slots[n % 3].run(functools.partial(image, n), name=f"image {n}") for n in range(12))
    )
    assert sorted(made) == list(range(12))
    assert most == 1
    assert await redis.keys(f"{LEASE}:[0-9]*") == []  # every lease freed


async def test_a_lapsed_lease_is_taken_again_before_the_next_attempt(redis: ArqRedis) -> None:
    """A holder whose lease lapsed (another took the slot meanwhile) does not start its next
    attempt until it holds the slot again, with a new fencing number."""
    slot = slot_on(redis, ttl=1)
    other = ImageLeases(redis, "TOGETHER_API_KEY", 1, ttl=60)
    events: list[str] = []
    taken = asyncio.Event()
    stolen: list[str] = []

    async def image(_: ImageKey) -> None:
        events.append("attempt 1")
        [key] = await redis.keys(f"{LEASE}:0")
        first = await redis.get(key)
        await redis.delete(key)  # the lease lapsed (the worker stalled) …
        lease = await other.acquire()  # … and another worker took the slot
        stolen.append(lease.token)
        taken.set()
        waiting = asyncio.create_task(wait_before_retry(0))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # no second attempt while the other holds it
        await other.release(lease)
        await waiting
        events.append("attempt 2")
        now = await redis.get(key)
        assert now is not None and first is not None and int(now) > int(first) > 0

    await slot.run(image, name="image")
    assert taken.is_set() and events == ["attempt 1", "attempt 2"]
    assert int(stolen[0]) > 0


async def test_a_cancelled_wait_for_a_slot_takes_no_lease(redis: ArqRedis) -> None:
    holder = ImageLeases(redis, "TOGETHER_API_KEY", 1, ttl=60)
    lease = await holder.acquire()
    slot = slot_on(redis, ttl=60)
    asked = False

    async def image(_: ImageKey) -> None:
        nonlocal asked
        asked = True

    waiting = asyncio.create_task(slot.run(image, name="image"))
    await asyncio.sleep(0.2)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await redis.get(lease.key) == lease.token.encode()  # still the first holder's
    assert not asked


async def test_each_key_has_its_own_leases_named_by_its_variable(redis: ArqRedis) -> None:
    """Two keys, one slot each, on three 'workers': two images at once, never two on one key;
    the leases are named by the variables, and no key is ever written to Redis."""
    keys = [ImageKey("KEY_A", "tok-secret-a"), ImageKey("KEY_B", "tok-secret-b")]
    slots = [slot_on(redis, keys, ttl=5) for _ in range(3)]
    holding: dict[str, int] = {"KEY_A": 0, "KEY_B": 0}
    most = 0
    both = asyncio.Event()
    names: set[bytes] = set()

    async def image(n: int, key: ImageKey) -> int:
        nonlocal most
        assert key.variable is not None
        holding[key.variable] += 1
        assert holding[key.variable] == 1
        most = max(most, sum(holding.values()))
        if most == 2:
            both.set()
        names.update(await redis.keys("reelbot:*"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await both.wait()
        holding[key.variable] -= 1
        return n

    made = await asyncio.gather(
        *(slots[n % 3].run(functools.partial(image, n), name=f"image {n}") for n in range(8))
    )
    assert sorted(made) == list(range(8))
    assert most == 2
    assert {b"reelbot:image-lease:KEY_A:0", b"reelbot:image-lease:KEY_B:0"} <= names
    for name in await redis.keys("*"):
        assert b"tok-secret" not in name
        if await redis.type(name) == b"string":
            assert b"tok-secret" not in (await redis.get(name) or b"")


async def test_a_refused_key_is_taken_out_for_every_worker(redis: ArqRedis) -> None:
    """A key refused (402) on one worker is skipped by another; the last key refused fails
    the request naming each variable, and the next request tries them all again."""
    keys = [ImageKey("KEY_A", "tok-secret-a"), ImageKey("KEY_B", "tok-secret-b")]
    first, second = slot_on(redis, keys, ttl=5), slot_on(redis, keys, ttl=5)
    used: list[str | None] = []

    async def refuse_a(key: ImageKey) -> str | None:
        used.append(key.variable)
        if key.variable == "KEY_A":
            raise KeyRefused("KEY_A has no credit left (402)", variable="KEY_A", status=402)
        return key.variable

    assert await first.run(refuse_a, name="image 1") == "KEY_B"
    assert used == ["KEY_A", "KEY_B"]
    out = await redis.get("reelbot:image-key-out:KEY_A")
    for _ in range(100):  # the marker is written in the background
        if out is not None:
            break
        await asyncio.sleep(0.02)
        out = await redis.get("reelbot:image-key-out:KEY_A")
    assert out is not None and b"KEY_A" in out
    used.clear()
    assert await second.run(refuse_a, name="image 2") == "KEY_B"
    assert used == ["KEY_B"]  # the other worker never sent KEY_A

    async def refuse_all(key: ImageKey) -> None:
        raise KeyRefused(
            f"{key.variable} is not a valid key (401)", variable=str(key.variable), status=401
        )

    with pytest.raises(ImageError) as error:
        await second.run(refuse_all, name="image 3")
    assert "KEY_A" in str(error.value) and "KEY_B" in str(error.value)
    assert "tok-secret" not in str(error.value)


async def test_the_bot_side_gives_up_on_an_unreachable_redis_saying_where() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(ReelbotError) as error:
        await connect(RedisConfig(url=url, connect_timeout=1), "the bot")
    message = str(error.value)
    assert "cannot reach Redis at 127.0.0.1:" in message and "[redis] url" in message
    assert "hunter2" not in message


async def test_a_worker_that_cannot_reach_redis_says_so_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    config.write_text(toml_text({
        "queue": {"backend": "arq"},
        "redis": {"url": url, "connect_timeout": 2.0},
        "storage": {"data_dir": str(tmp_path / "data")},
        "tts": {"provider": "espeak"},
    }))  # fmt: skip
    worker = WorkerProcess(config, {"PATH": "/usr/bin:/bin"}, tmp_path / "worker.log")
    await worker.start()
    assert await worker.wait(60) == 1
    output = worker.output()
    assert "cannot reach Redis" in output and "retrying" in output
    assert output.strip().splitlines()[-1].startswith("error: worker ")
    assert "gave up after 2 s" in output
    assert "hunter2" not in output and "Traceback" not in output


async def test_a_worker_refuses_a_local_backend_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml_text({"storage": {"data_dir": str(tmp_path / "data")},
                                 "tts": {"provider": "espeak"}}))  # fmt: skip
    worker = WorkerProcess(config, {"PATH": "/usr/bin:/bin"}, tmp_path / "worker.log")
    await worker.start()
    assert await worker.wait(60) == 2
    [line] = worker.output().strip().splitlines()
    assert line.startswith('error: a worker renders for `[queue] backend = "arq"`')


async def test_a_workers_waiting_requests_are_served_in_job_order(redis: ArqRedis) -> None:
    """While another worker holds the key's slot, this worker's requests wait; they are then
    served by job order, not by arrival (the first to arrive gives way to earlier jobs)."""
    holder = ImageLeases(redis, "TOGETHER_API_KEY", 1, ttl=60)
    lease = await holder.acquire()
    slot = slot_on(redis, ttl=60)
    served: list[int] = []

    async def image(job: int, _: ImageKey) -> None:
        served.append(job)

    waiting = [
        asyncio.create_task(slot.run(functools.partial(image, job), name=f"job {job}", order=job))
        for job in (3, 1, 2)
    ]
    for _ in range(200):  # each has arrived: one looks for a slot, two wait behind it
        if slot.keys.waiting == 2:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    assert slot.keys.waiting == 2  # type: ignore[attr-defined]
    await holder.release(lease)
    await asyncio.gather(*waiting)
    assert served == [1, 2, 3]
