"""Tiny WAV helpers (stdlib only): make a quiet tone, speak words as tones (with when each word
is said), write a WAV as a streaming server does, read a WAV's duration."""

from __future__ import annotations

import io
import math
import re
import struct
import sys
import wave
from array import array
from typing import Any

SAMPLE_RATE = 24000
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TOKEN = re.compile(r"\d|[^\W\d_]+(?:['’][^\W\d_]+)*|[^\w\s]")


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
    return pcm_wav((one_second * (frames // sample_rate + 1))[:frames], sample_rate)


def pcm_wav(samples: array[int], sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono samples as a WAV with a 44-byte header."""
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()  # WAV is little-endian
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


STREAMED_SIZE = b"\xff\xff\xff\xff"  # what a streaming server writes for "unknown"


def as_streamed(wav: bytes) -> bytes:
    """A WAV as a server streaming it writes it (OpenAI, Kokoro-FastAPI): the RIFF and data
    sizes are not known when the header goes out, so both are 0xFFFFFFFF."""
    out = bytearray(wav)
    assert out[:4] == b"RIFF" and out[36:40] == b"data"  # the 44-byte header pcm_wav writes
    out[4:8] = STREAMED_SIZE
    out[40:44] = STREAMED_SIZE
    return bytes(out)


def streamed_wav(seconds: float, **tone: Any) -> bytes:
    """``make_wav`` as a streaming server writes it (see ``as_streamed``)."""
    return as_streamed(make_wav(seconds, **tone))


def speak(text: str, speed: float) -> tuple[list[dict[str, Any]], array[int]]:
    """Words as a speech server with word timings says them: each word a 220 Hz tone (0.07 s a
    letter, at least 0.15 s) with 0.04 s between words, 0.3 s of silence after a comma and 0.5 s
    after a full stop (so pauses can be found with silencedetect). The words come back as a
    server normalises them: digits spelled out one by one ("200" → "two", "zero", "zero"),
    punctuation a token of its own. The word timestamps, and the 24 kHz samples."""
    samples: array[int] = array("h")
    words: list[dict[str, Any]] = []

    def add(seconds: float, tone: bool) -> tuple[float, float]:
        start = len(samples) / SAMPLE_RATE
        count = round(seconds / speed * SAMPLE_RATE)
        if tone:
            base = len(samples)
            samples.extend(round(9000 * math.sin(2 * math.pi * 220 * (base + i) / SAMPLE_RATE))
                           for i in range(count))  # fmt: skip
        else:
            samples.extend([0] * count)
        return start, len(samples) / SAMPLE_RATE

    for token in _TOKEN.findall(text):
        if token.isdigit():
            token = DIGITS[int(token)]
        if token[0].isalnum():
            start, end = add(max(0.15, 0.07 * len(token)), tone=True)
            words.append({"word": token, "start_time": round(start, 3), "end_time": round(end, 3)})
            add(0.04, tone=False)
        else:  # punctuation: its own token, spanning the pause it makes
            pause = 0.5 if token in ".!?" else 0.3 if token in ",;:" else 0.0
            start, end = add(pause, tone=False)
            words.append({"word": token, "start_time": round(start, 3), "end_time": round(end, 3)})
    return words, samples


def wav_duration(data: bytes) -> float:
    """Duration in seconds of a canonical 44-byte-header PCM WAV given as bytes; the data size
    is taken from the bytes themselves when the header says 0xFFFFFFFF (streamed)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data"
    channels, rate = struct.unpack_from("<HI", data, 22)
    bits = struct.unpack_from("<H", data, 34)[0]
    size = len(data) - 44 if data[40:44] == STREAMED_SIZE else struct.unpack_from("<I", data, 40)[0]
    return float(size / (channels * bits // 8) / rate)
