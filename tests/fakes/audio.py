"""Tiny WAV helpers (stdlib only): make a quiet tone, read a WAV's duration."""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array

SAMPLE_RATE = 24000


def make_wav(
    seconds: float,
    *,
    sample_rate: int = SAMPLE_RATE,
    freq_hz: int = 220,
    amplitude: float = 0.1,
) -> bytes:
    """A 16-bit PCM mono WAV of ``round(seconds * sample_rate)`` frames holding a sine tone.

    ``freq_hz`` is an integer, so one second of samples is periodic and is simply repeated.
    """
    frames = max(0, round(seconds * sample_rate))
    peak = amplitude * 32767
    one_second = array(
        "h",
        (
            round(peak * math.sin(2 * math.pi * freq_hz * i / sample_rate))
            for i in range(sample_rate)
        ),
    )
    samples = (one_second * (frames // sample_rate + 1))[:frames]
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def wav_duration(data: bytes) -> float:
    """Duration in seconds of a WAV given as bytes."""
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getnframes() / w.getframerate()
