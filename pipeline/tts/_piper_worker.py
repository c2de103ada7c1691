# SPDX-License-Identifier: GPL-3.0-or-later
#
# This file imports Piper (piper-tts, GPL-3.0-or-later) and is therefore distributed under the
# GPL-3.0-or-later, unlike the rest of reelbot (MIT). It is the only file of reelbot that
# imports `piper`; reelbot runs it as a separate program (a child process, spoken to over
# stdin/stdout) and never imports it.
"""Speak with a Piper voice, scene after scene, and say where every phoneme starts.

    python -I _piper_worker.py MODEL.onnx MODEL.onnx.json

Loads the voice once (with `include_alignments`, which patches the model in memory through the
`onnx` package so that it reports how many samples each phoneme lasts), prints one line

    {"ready": true, "sample_rate": 22050, "speakers": {"name": id}}

and then answers requests, one JSON line in, one JSON line out, until stdin closes:

    in:  {"text": "...", "out": "/path.wav", "words": ["For", "forty", ...],
          "length_scale": 1.0 | null, "speaker": 0 | null, "sentence_silence": 0.25}
    out: {"ok": true, "samples": N, "phonemes": [["f", 512], ...] | null,
          "words": ["fɔːɹ", "fˈɔːɹɾi", ...]}
     or: {"ok": false, "error": "..."}

`phonemes` holds every phoneme Piper spoke with the sample where it starts in the WAV (null when
the voice gives no alignments); `words` each requested word as Piper phonemizes it alone, so
the caller can find the words in the phonemes. The WAV is 16-bit mono PCM, with
`sentence_silence` seconds of silence between sentences (as `piper --sentence-silence`).

Exit status: 0 stdin closed; 3 Piper is not installed; 4 the voice cannot be loaded.
"""

from __future__ import annotations

import json
import os
import sys
import wave
from typing import Any


def load(model: str, config: str) -> Any:
    try:
        from piper import PiperVoice
    except ImportError as exc:
        print(f"Piper is not installed: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    try:
        return PiperVoice.load(model, config_path=config, include_alignments=True)
    except Exception as exc:
        print(f"cannot load the Piper voice {model}: {exc}", file=sys.stderr)
        raise SystemExit(4) from None


def speak(voice: Any, request: dict[str, Any]) -> dict[str, Any]:
    from piper import SynthesisConfig

    config = SynthesisConfig(speaker_id=request.get("speaker"),
                             length_scale=request.get("length_scale"))  # fmt: skip
    phonemes: list[list[Any]] | None = []
    samples = 0
    pause = b"\0\0" * round(float(request.get("sentence_silence") or 0) * voice.config.sample_rate)
    with wave.open(request["out"], "wb") as wav:
        wav.setframerate(voice.config.sample_rate)
        wav.setsampwidth(2)
        wav.setnchannels(1)
        for chunk in voice.synthesize(request["text"], syn_config=config, include_alignments=True):
            if samples:
                wav.writeframes(pause)
                samples += len(pause) // 2
            audio = chunk.audio_int16_bytes
            wav.writeframes(audio)
            if phonemes is not None and chunk.phoneme_alignments:
                at = samples
                for alignment in chunk.phoneme_alignments:
                    phonemes.append([alignment.phoneme, at])
                    at += int(alignment.num_samples)
            else:
                phonemes = None  # one sentence without alignments: none are reliable
            samples += len(audio) // 2
    words = ["".join(p for sentence in voice.phonemize(w) for p in sentence)
             for w in request.get("words", [])]  # fmt: skip
    return {"ok": True, "samples": samples, "phonemes": phonemes, "words": words}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1].rstrip(), file=sys.stderr)
        return 64
    # The answers get stdout to themselves: whatever a library prints (to fd 1, even from C)
    # goes to stderr instead.
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    voice = load(*argv)
    speakers = dict(voice.config.speaker_id_map or {})
    ready = {"ready": True, "sample_rate": voice.config.sample_rate, "speakers": speakers}
    print(json.dumps(ready), file=answers, flush=True)
    for line in sys.stdin.buffer:
        try:
            answer = speak(voice, json.loads(line))
        except Exception as exc:  # one bad request: say so, and keep serving
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer, ensure_ascii=False), file=answers, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: stop quietly
        sys.exit(130)
