"""Tiny WAV helpers (stdlib only): make a quiet tone, read a WAV's duration."""

from __future__ import annotations

import io
import math
import struct
import sys
import wave
from array import array
from typing import Any

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


STREAMED_SIZE = b"\xff\xff\xff\xff"  # what a streaming server writes for "unknown"


def streamed_wav(seconds: float, **tone: Any) -> bytes:
    """``make_wav`` as a server streaming it writes it (OpenAI, Kokoro-FastAPI): the RIFF and
    data sizes are not known when the header goes out, so both are 0xFFFFFFFF."""
    wav = bytearray(make_wav(seconds, **tone))
    assert wav[:4] == b"RIFF" and wav[36:40] == b"data"  # the 44-byte header make_wav writes
    wav[4:8] = STREAMED_SIZE
    wav[40:44] = STREAMED_SIZE
    return bytes(wav)


def wav_duration(data: bytes) -> float:
    """Duration in seconds of a canonical 44-byte-header PCM WAV given as bytes; the data size
    is taken from the bytes themselves when the header says 0xFFFFFFFF (streamed)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data"
    channels, rate = struct.unpack_from("<HI", data, 22)
    bits = struct.unpack_from("<H", data, 34)[0]
    size = len(data) - 44 if data[40:44] == STREAMED_SIZE else struct.unpack_from("<I", data, 40)[0]
    return float(size / (channels * bits // 8) / rate)
