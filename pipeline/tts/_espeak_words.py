"""Speak text with libespeak-ng and report where every word starts (a helper process).

    python -I _espeak_words.py VOICE WPM OUT.wav < text

The espeak-ng command line cannot report word positions, but the library it wraps can: its
synthesis callback receives `espeakEVENT_WORD` events carrying each word's character position
and its sample index in the output. This script drives the library exactly like the
`espeak-ng -v VOICE -s WPM -w OUT.wav` command does (same flags, same WAV samples), writes the
WAV, and prints `{"rate": Hz, "samples": N, "words": [[char, length, sample], ...]}` on stdout
(characters counted from 0).

It runs as its own process, not in the caller's: the library keeps global state, and a
process can be killed when a render is cancelled. It only uses the standard library, so it
starts fast (run it with `-I`, by path).

Exit status: 0 done; 2 unknown voice; 3 libespeak-ng cannot be loaded; 4 synthesis failed;
5 the WAV cannot be written (a full disk, a read-only folder). With each of these, stderr holds
one plain line for the user (no traceback, no path).
"""

from __future__ import annotations

import array
import ctypes
import json
import sys
import wave
from typing import Any

LIBRARY = "libespeak-ng.so.1"
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
ESPEAK_RATE = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
POS_CHARACTER = 1
# The espeak-ng command line's flags: espeakCHARS_AUTO | espeakPHONEMES | espeakENDPAUSE.
SYNTH_FLAGS = 0 | 0x100 | 0x1000


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # espeak_EVENT from speak_lib.h
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def load_library() -> Any:
    return ctypes.CDLL(LIBRARY)


def speak(voice: str, wpm: int, text: str, out: str) -> dict[str, Any]:
    try:
        lib = load_library()
    except OSError as exc:
        print(f"cannot load {LIBRARY}: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, ESPEAK_INITIALIZE_DONT_EXIT)
    if rate <= 0:
        print("libespeak-ng could not be initialised", file=sys.stderr)
        raise SystemExit(4)
    if lib.espeak_SetVoiceByName(voice.encode("utf-8")) != 0:
        print(f"unknown voice {voice!r}", file=sys.stderr)
        raise SystemExit(2)
    lib.espeak_SetParameter(ESPEAK_RATE, wpm, 0)

    samples = bytearray()
    words: list[list[int]] = []

    def on_audio(wav: Any, count: int, events: Any) -> int:
        if count > 0:
            samples.extend(ctypes.string_at(wav, count * 2))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == EVENT_WORD:
                words.append([event.text_position - 1, event.length, event.sample])
            i += 1
        return 0

    callback = _Callback(on_audio)  # kept referenced until synthesis ends
    lib.espeak_SetSynthCallback(callback)
    data = text.encode("utf-8") + b"\0"
    status = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, SYNTH_FLAGS, None, None)
    lib.espeak_Synchronize()
    if status != 0 or not samples:
        print(f"espeak_Synth failed (status {status})", file=sys.stderr)
        raise SystemExit(4)
    try:
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(_little_endian(samples))
    except OSError as exc:
        print(f"cannot write the speech: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        raise SystemExit(5) from None
    lib.espeak_Terminate()
    return {"rate": rate, "samples": len(samples) // 2, "words": words}


def _little_endian(samples: bytearray) -> bytes:
    if sys.byteorder == "little":
        return bytes(samples)
    swapped = array.array("h", bytes(samples))
    swapped.byteswap()
    return swapped.tobytes()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 64
    voice, wpm, out = argv
    text = sys.stdin.buffer.read().decode("utf-8")
    json.dump(speak(voice, int(wpm), text, out), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
