"""WAV files as speech servers send them: streamed WAVs carry 0xFFFFFFFF (or 0) as their
RIFF and data sizes, because the writer did not know the length yet (Kokoro-FastAPI, OpenAI).
`repair_wav` writes the real sizes, so every tool reads the file's true duration."""

from __future__ import annotations

import struct

__all__ = ["repair_wav"]


def repair_wav(data: bytes) -> bytes:
    """`data` with its RIFF and data chunk sizes set from its real length; ValueError when it
    is not a PCM WAV file."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("something that is not a WAV file")
    out = bytearray(data)
    pos = 12
    while pos + 8 <= len(out):
        chunk, size = out[pos : pos + 4], struct.unpack_from("<I", out, pos + 4)[0]
        body = pos + 8
        if chunk == b"data":
            real = len(out) - body
            if size > real or size == 0:
                struct.pack_into("<I", out, pos + 4, real - real % 2)
                del out[body + real - real % 2 :]
            break
        pos = body + size + (size & 1)
    else:
        raise ValueError("a WAV file without sound (no data chunk)")
    struct.pack_into("<I", out, 4, len(out) - 8)
    return bytes(out)
