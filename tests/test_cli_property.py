"""Property test of the whole command line: `reelbot render` in a subprocess, given scripts,
configs and options that hypothesis makes hostile. Whatever it is given, reelbot

- exits 0 (a video), 1 (the render failed) or 2 (the input cannot be used), never otherwise;
- says so in a few lines, never a traceback, never an "unexpected error", and never sends a
  control character or an escape sequence of the user's to the terminal;
- writes nothing outside the data folder and the video (nor in $HOME or $TMPDIR);
- leaves, when it fails, no video and no temporary file beside where the video would be;
- when it succeeds, writes a video that ffprobe reads, whose title tag is clean text.

Offline and small, so it stays within about two minutes: offline cards and espeak-ng, tiny
scripts (at most 2 scenes of a few words, set by the environment, which beats the file), 10
frames a second, no loudness pass, and a bounded number of examples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from pipeline.text import clean_text

from .media import ffprobe
from .test_cli import cli_env

# The offline defaults and a small render, beating whatever the generated file says.
PINNED = {
    "REELBOT_IMAGES__PROVIDER": "card",
    "REELBOT_TTS__PROVIDER": "espeak",
    "REELBOT_VIDEO__FPS": "10",
    "REELBOT_VIDEO__PAD_SECONDS": "0.1",
    "REELBOT_VIDEO__PRESET": "ultrafast",
    "REELBOT_VIDEO__TIMEOUT": "120",
    "REELBOT_SOUND__NORMALIZE": "false",
    "REELBOT_LIMITS__MAX_SCENES": "2",
    "REELBOT_LIMITS__MAX_CHARS_PER_SCENE": "60",
    "REELBOT_LIMITS__MAX_SCRIPT_BYTES": "30000",
    "COLUMNS": "200",
}
MAX_LINES = 5  # an argparse refusal: its usage (2 lines at 200 columns) and the error

# ------------------------------------------------------------------ hostile pieces

# Text a script file may hold as it is, and text that only an escape (JSON's \u001b, an
# option) can carry: control characters, terminal escape sequences, lone surrogates.
PRINTABLE = [
    "[/x]", "[bold]", "[link=file:///etc/passwd]x[/link]", "²", "١٢", "$(id)", "`id`",
    "; rm -rf ~", "'", '"', "\\", "%s%n", "{\\b1}", "{}", ":", "=", ",", "../../etc/passwd",
    "映画", "🎬", "فيلم", "\u202e", "\ufeff", "#", "-- --", "-o", "--help", "  ",
]  # fmt: skip
CONTROL = ["\x1b[31m", "\x1b]0;PWNED\x07", "\x1b[2J", "\x9b31m", "\x00", "\x07", "\x7f",
           "\ud800", "\udfff", "\n", "\r", "\t"]  # fmt: skip
SHORT = st.text(st.characters(codec="utf-8"), max_size=5)
SAFE_TEXT = st.lists(st.one_of(st.sampled_from(PRINTABLE), SHORT), max_size=3).map("".join)
ESCAPED_TEXT = st.lists(st.sampled_from(PRINTABLE + CONTROL), max_size=3).map("".join)
WORDS = st.lists(st.sampled_from(["Hello", "there", "cat", "sea", "a", "sky"]), min_size=1,
                 max_size=4).map(" ".join)  # fmt: skip
SEEDS = st.sampled_from(["42", "0", "2147483647", "2147483648", "-1", "²", "9" * 5000, "x"])


def narration(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A few words to speak, now and then with something hostile among them."""
    return st.tuples(WORDS, st.one_of(st.just(""), text)).map(" ".join)


@st.composite
def markdown(draw: st.DrawFn) -> bytes:
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append("# " + draw(SAFE_TEXT))
    header = ["voice: en-us", "aspect: 1:1", "aspect: 4:3", "mood: calm", "title: T"]
    lines += draw(st.lists(st.sampled_from(header), max_size=1))
    for number in range(draw(st.sampled_from([1, 1, 2, 2, 0, 3]))):
        lines.append(f"## {number} {draw(SAFE_TEXT)}")
        keys = draw(st.lists(st.sampled_from(["image", "seed", "voice"]), max_size=2,
                             unique=True))  # fmt: skip
        for key in keys:
            value = {"image": SAFE_TEXT, "seed": SEEDS,
                     "voice": st.sampled_from(["en-us", "en-gb", "xx-nope"])}[key]  # fmt: skip
            lines.append(f"{key}: {draw(value)}")
        lines.append(draw(narration(SAFE_TEXT)))
    if draw(st.integers(0, 5)) == 0:  # a raw control character: not a text file
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(CONTROL)))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@st.composite
def json_script(draw: st.DrawFn) -> bytes:
    odd: st.SearchStrategy[object] = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.just([])
    )
    scene = st.fixed_dictionaries(
        {"narration": st.one_of(narration(ESCAPED_TEXT), narration(ESCAPED_TEXT), odd)},
        optional={"image_prompt": ESCAPED_TEXT, "voice": st.sampled_from(["en-us", "\u0000"]),
                  "seed": st.one_of(SEEDS.map(lambda s: int(s) if s.isascii() and s.lstrip("-")
                                                  .isdigit() and len(s) < 20 else s), odd)},
    )  # fmt: skip
    data = draw(st.fixed_dictionaries(
        {"scenes": st.one_of(st.lists(scene, min_size=1, max_size=2), odd)},
        optional={"title": ESCAPED_TEXT, "aspect": st.sampled_from(["1:1", "4:3", "16:9"])},
    ))  # fmt: skip
    # ensure_ascii: every control character and lone surrogate written as an escape.
    return json.dumps(data, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


SCRIPTS = st.one_of(
    st.tuples(st.just("s.md"), markdown()),
    st.tuples(st.just("s.json"), json_script()),
    st.tuples(st.just("s.md"), markdown()),
    st.tuples(st.just("s.json"), json_script()),
    st.tuples(st.sampled_from(["s.txt", "s"]), st.lists(narration(SAFE_TEXT), max_size=2).map(
        lambda lines: "\n\n".join(lines).encode("utf-8", "surrogatepass"))),
    st.tuples(st.sampled_from(["s.md", "s.json"]), st.binary(max_size=100)),
)  # fmt: skip

# Tables and keys that exist, that almost exist, and that must be refused.
TABLES = ["images", "tts", "video", "captions", "sound", "storage", "limits", "discord", "queue",
          "rate_limit", "vidoe", "Video", "secrets", "Secrets", "SECRETS", "x"]  # fmt: skip
KEYS = ["provider", "model", "steps", "width", "voice", "speed", "aspect", "fps", "crf", "zoom",
        "crossfade", "enabled", "font", "colour", "max_words", "normalize", "music", "data_dir",
        "cache_max_mb", "max_scenes", "guild_ids", "api_key", "together_api_key", "widht",
        "aspekt", "per_user"]  # fmt: skip
TOML_VALUE = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.sampled_from(["nan", "inf", "-inf", "0.0", "1e308", "true", "[1, 2]", "{ a = 1 }",
                     "1979-05-27T07:32:00Z"]),
    # A TOML basic string is written like a JSON one (\uXXXX escapes).
    st.one_of(ESCAPED_TEXT, st.sampled_from(["16:9", "auto", "card", "espeak", "/", "music/",
                                             "/etc/passwd", "#FF0000"])).map(json.dumps),
)  # fmt: skip
# Lines a careful user might write: the render goes ahead with them.
VALID = {
    "captions": ["enabled = true", 'position = "top"', 'font = "DejaVu Sans"', "max_words = 1"],
    "video": ["crossfade = 0.3", "zoom = 1.0", "crf = 40"],
    "images": ["negative_prompt = {}"],
    "tts": ['voice = "en-gb"', "speed = 1.5"],
    "discord": ["guild_ids = [1, 2]"],
    "sound": ["music_fade = 0.5"],
}


@st.composite
def config(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["none"] * 3 + ["valid"] * 3 + ["hostile", "garbage"]))
    if kind == "none":
        return None
    if kind == "garbage":
        return draw(st.text(max_size=80))
    lines: list[str] = []
    if kind == "valid":
        for table in draw(st.lists(st.sampled_from(sorted(VALID)), min_size=1, max_size=2,
                                   unique=True)):  # fmt: skip
            line = draw(st.sampled_from(VALID[table]))
            lines += [f"[{table}]", line.format(json.dumps(draw(ESCAPED_TEXT)))]
        return "\n".join(lines) + "\n"
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=1)):  # a top-level key
        lines.append(f"{key} = {draw(TOML_VALUE)}")
    for table in draw(st.lists(st.sampled_from(TABLES), max_size=2, unique=True)):
        lines.append(f"[{table}]")
        for key in draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True)):
            lines.append(f"{key} = {draw(TOML_VALUE)}")
    return "\n".join(lines) + "\n"


OPTIONS = st.lists(
    st.one_of(
        st.tuples(),
        st.tuples(st.just("--title"), ESCAPED_TEXT),
        st.tuples(st.just("--voice"), st.sampled_from(["en-us", "xx-nope", "-", "en-gb+f3"])),
        st.tuples(st.just("--aspect"), st.sampled_from(["1:1", "4:3", "16:9", ""])),
        st.tuples(st.sampled_from(["--captions", "--no-captions", "-v", "--sequential"])),
    ),
    max_size=2,
).map(lambda groups: [arg for group in groups for arg in group])
# Where the video goes: brackets, spaces, quotes, a new folder.
OUTPUTS = st.sampled_from(["v.mp4", "[x] v.mp4", "out/new/v.mp4", "it's v.mp4", "-v.mp4",
                           "v"])  # fmt: skip


def argv_safe(text: str) -> str:
    """An argument as a shell can pass it: no NUL (argv cannot hold one) and bytes, not lone
    surrogates, except those standing for undecodable bytes (U+DC80-U+DCFF: they reach reelbot
    as bytes that are not UTF-8, which Python decodes back to them)."""
    return "".join(ch for ch in text if ch != "\x00" and not "\ud800" <= ch < "\udc80"
                   and not "\udd00" <= ch <= "\udfff")  # fmt: skip


# ------------------------------------------------------------------ the property

HOSTILE_JSON = (b'{"title": "a\\u0000\\u001b]0;PWNED\\u0007b", "scenes": '
                b'[{"narration": "Hi \\u0000 there \\ud800 sky."}]}')  # fmt: skip


def files_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@settings(max_examples=18, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(SCRIPTS, config(), OPTIONS, OUTPUTS)
@example(("s.md", b"# [/x]\n## 1\nHello.\n"), None, [], "v.mp4")
@example(("s.md", "## 1\nseed: ²\nHi.\n".encode()), '[Secrets]\nx = "1"\n', [], "v.mp4")
@example(("s.json", HOSTILE_JSON), 'aspect = "16:9"\n', [], "v.mp4")
@example(("s.md", b"## 1\nHi.\n"), "[vidoe]\nfps = 1\n", ["--title", "[bold]x"], "out/new/v.mp4")
def test_the_cli_survives_hostile_input(
    script: tuple[str, bytes], config_text: str | None, options: list[str], output: str
) -> None:
    with tempfile.TemporaryDirectory(prefix="reelbot-property-") as root_name:
        root = Path(root_name).resolve()
        home, tmp, data = root / "home", root / "tmp", root / "data"
        home.mkdir()
        tmp.mkdir()
        name, content = script
        (root / name).write_bytes(content)
        args = ["render", name, "-o", output, *(argv_safe(o) for o in options)]
        if config_text is not None:
            (root / "c.toml").write_text(config_text, encoding="utf-8", errors="surrogatepass")
            args += ["--config", "c.toml"]
        given_files = files_under(root)
        env = cli_env(data, HOME=str(home), TMPDIR=str(tmp), XDG_CACHE_HOME=str(home / ".cache"),
                      XDG_CONFIG_HOME=str(home / ".config"), **PINNED)  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            capture_output=True, timeout=300, env=env, cwd=root,
        )  # fmt: skip
        said = (done.stdout + done.stderr).decode("utf-8", "replace")
        report = f"exit {done.returncode}, argv {args}:\n{said}"

        assert done.returncode in (0, 1, 2), report
        event(f"exit {done.returncode}")
        lines = [line for line in said.splitlines() if line.strip()]
        if "-v" not in options:
            assert 1 <= len(lines) <= MAX_LINES, report
        assert "Traceback" not in said and "unexpected" not in said, report
        assert not [ch for ch in said if ch != "\n" and (ord(ch) < 32 or 127 <= ord(ch) < 160)], (
            report
        )

        video = (root / output).resolve()
        made = files_under(root) - given_files
        outside = {p for p in made if not (root / p).is_relative_to(data)}
        if done.returncode == 0:
            assert outside == {video.relative_to(root)}, report
            probe = ffprobe(video)
            assert probe.duration > 0.1, report
            title = probe.tags.get("title", "")
            assert title and title == clean_text(title), (title, report)
        else:
            assert outside == set(), (outside, report)
        assert os.listdir(home) == [] and os.listdir(tmp) == [], report
