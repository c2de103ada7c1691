"""A scene's own picture or clip: the script syntax in all three formats, where a name may
point, every refusal (one line naming the scene and the problem, before any paid request), and
the copy in the artifact cache (by content, counted, pinned). Real files, real ffprobe."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from pipeline.cache import ArtifactCache
from pipeline.config import LimitsConfig
from pipeline.errors import ScriptError
from pipeline.own_media import FolderMedia, MediaProblem, UploadedMedia, prepare_media
from pipeline.script import parse_script, to_markdown
from tests.fakes.together import FakeTogether

from .media_files import GREEN, RED, make_clip, make_picture
from .test_cli import FAST, reelbot_async

# ---------------------------------------------------------------- the script syntax


def test_media_in_markdown_json_and_plain_text() -> None:
    markdown = parse_script("# T\n## 1\nmedia: photos/kettle.jpg\nOur kettle.\n## 2\nA card.\n")
    assert [s.media for s in markdown.scenes] == ["photos/kettle.jpg", None]
    document = {"scenes": [{"narration": "Our kettle.", "media": "photos/kettle.jpg"},
                           {"narration": "A card."}]}  # fmt: skip
    from_json = parse_script(json.dumps(document), filename="s.json")
    assert [(s.media, s.narration) for s in from_json.scenes] == [
        ("photos/kettle.jpg", "Our kettle."), (None, "A card.")]  # fmt: skip
    text = parse_script("media: kettle.jpg\nOur kettle.\n\nMedia: the press loved it.\n",
                        filename="s.txt")  # fmt: skip
    assert [(s.media, s.narration) for s in text.scenes] == [
        ("kettle.jpg", "Our kettle."), (None, "Media: the press loved it.")]  # fmt: skip
    assert text.scenes[0].line == 1


@pytest.mark.parametrize(
    ("source", "filename", "words"),
    [
        ("## 1\nmedia: a.png\nimage: a kettle\nHi.", "s.md",
         "line 3 (scene 1): 'image:' has no use in a scene with its own media"),
        ("## 1\nseed: 4\nmedia: a.png\nHi.", "s.md", "line 2 (scene 1): 'seed:' has no use"),
        ("## 1\nmedia:\nHi.", "s.md", "line 2 (scene 1): 'media:' is empty"),
        ("## 1\nmedia: a.png\nmedia: b.png\nHi.", "s.md", "'media:' is given twice"),
        ("media: a.png\n\nHi.", "s.txt", "line 1 (scene 1): this scene has no narration"),
        ('{"scenes": [{"narration": "Hi.", "media": "a.png", "image_prompt": "x"}]}', "s.json",
         "'image_prompt' has no use in a scene with its own 'media'"),
        ('{"scenes": [{"narration": "Hi.", "media": 3}]}', "s.json", "'media' must be a string"),
        ('{"scenes": [{"narration": "Hi.", "media": " "}]}', "s.json", "'media' is empty"),
    ],
)  # fmt: skip
def test_media_mistakes_in_a_script_name_the_line(source: str, filename: str, words: str) -> None:
    with pytest.raises(ScriptError) as caught:
        parse_script(source, filename=filename)
    assert words in str(caught.value)


def test_to_markdown_reads_back_as_the_same_script() -> None:
    source = (
        "# A Title\nvoice: en-gb\naspect: 1:1\nnegative_prompt: blur\n\n"
        "## Opening\nmedia: my photo.jpg\nFirst words,\nsecond line.\n\n"
        "## 2\nimage: a harbour\nnegative: fog\nseed: 42\nvoice: en-us\nSecond scene.\n\n"
        "## 3\nNarration only: image from it.\n"
    )
    script = parse_script(source, filename="s.md")
    again = parse_script(to_markdown(script), filename="s.md")
    strip = [s.model_copy(update={"line": 0}) for s in script.scenes]
    assert [s.model_copy(update={"line": 0}) for s in again.scenes] == strip
    assert again.model_copy(update={"scenes": ()}) == script.model_copy(update={"scenes": ()})


# ---------------------------------------------------------------- where a name may point


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    script_folder = tmp_path / "project"
    (script_folder / "shots").mkdir(parents=True)
    make_picture(script_folder / "shots" / "a.jpg")
    make_picture(tmp_path / "secret.jpg")
    (script_folder / "inside.jpg").symlink_to(script_folder / "shots" / "a.jpg")
    (script_folder / "outside.jpg").symlink_to(tmp_path / "secret.jpg")
    (script_folder / "dangling.jpg").symlink_to(script_folder / "gone.jpg")
    return script_folder


def test_the_cli_finds_media_in_the_script_folder_and_below(folder: Path) -> None:
    source = FolderMedia(folder)
    assert source.find("shots/a.jpg") == (folder / "shots" / "a.jpg").resolve()
    assert source.find("inside.jpg") == (folder / "shots" / "a.jpg").resolve()  # a link inside


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing.jpg", "does not exist in the script's folder"),
        ("../secret.jpg", "leads out of the script's folder ('..')"),
        ("shots/../../secret.jpg", "leads out of the script's folder"),
        ("/etc/passwd", "is an absolute path"),
        ("C:/Windows/win.ini", "is an absolute path"),
        ("outside.jpg", "is a link to a file outside the script's folder"),
        ("dangling.jpg", "is a link to a file that does not exist"),
        ("shots", "is a folder, not a file"),
    ],
)
def test_the_cli_never_reads_outside_the_script_folder(folder: Path, name: str, words: str) -> None:
    with pytest.raises(MediaProblem, match=words.replace("(", r"\(").replace(")", r"\)")):
        FolderMedia(folder).find(name)


def test_a_front_end_finds_only_the_files_uploaded_with_the_render(tmp_path: Path) -> None:
    upload = make_picture(tmp_path / "upload-1.jpg")
    source = UploadedMedia({"Kettle.JPG": upload})
    assert source.find("Kettle.JPG") == upload
    assert source.find("kettle.jpg") == upload  # the same name, another case
    for name in ("other.jpg", "../upload-1.jpg", str(upload)):
        with pytest.raises(MediaProblem, match=r"is not one of the files uploaded .*Kettle\.JPG"):
            source.find(name)
    with pytest.raises(MediaProblem, match="was not uploaded"):
        UploadedMedia({}).find("x.jpg")


# ---------------------------------------------------------------- every refusal


def bad_media(folder: Path, kind: str) -> str:
    """A bad media file of `kind` in `folder`; its name."""
    if kind == "text":
        (folder / "notes.png").write_text("not a picture at all\n")  # the name says PNG
        return "notes.png"
    if kind == "gif":
        Image.new("RGB", (80, 80), RED).save(folder / "anim.gif")
        return "anim.gif"
    if kind == "mp3":
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", str(folder /
                        "song.mp3")], check=True, timeout=60)  # fmt: skip
        return "song.mp3"
    if kind == "sound only":
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac",
                        str(folder / "voice.mp4")], check=True, timeout=60)  # fmt: skip
        return "voice.mp4"
    if kind == "cut off":
        data = make_clip(folder / "whole.mp4", seconds=2.0).read_bytes()
        (folder / "cut.mp4").write_bytes(data[: len(data) // 2])  # its index (moov) is at the end
        return "cut.mp4"
    if kind == "garbled":
        whole = make_clip(folder / "whole.mp4", (RED, GREEN, RED, GREEN), seconds=2.0,
                          size=(640, 360))  # fmt: skip
        fast = ["ffmpeg", "-v", "error", "-i", str(whole), "-c", "copy", "-movflags", "+faststart"]
        subprocess.run([*fast, str(folder / "fast.mp4")], check=True, timeout=60)
        garbled = bytearray((folder / "fast.mp4").read_bytes())
        for i in range(len(garbled) // 2, len(garbled), 5):
            garbled[i] = 0x55
        (folder / "garbled.mp4").write_bytes(bytes(garbled))
        return "garbled.mp4"
    if kind == "damaged picture":
        whole = make_picture(folder / "whole.png", image_format="PNG")
        (folder / "half.png").write_bytes(whole.read_bytes()[:400])
        return "half.png"
    if kind == "animated":
        frames = [Image.new("RGB", (100, 100), c) for c in (RED, GREEN)]
        frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:])
        return "anim.webp"
    if kind == "tiny":
        make_picture(folder / "icon.png", (32, 32), image_format="PNG")
        return "icon.png"
    if kind == "empty":
        (folder / "empty.jpg").write_bytes(b"")
        return "empty.jpg"
    if kind == "too large":
        make_picture(folder / "big.jpg", (1200, 1200))
        return "big.jpg"
    if kind == "too long":
        make_clip(folder / "long.webm", seconds=3.0)
        return "long.webm"
    raise AssertionError(kind)


REFUSALS = {
    "text": "is not a picture (PNG, JPEG, WebP) or a video clip (MP4, MOV, WebM)",
    "gif": "is a GIF; a picture (PNG, JPEG, WebP) or a video clip (MP4, MOV, WebM) is needed",
    "mp3": "is an MP3 (sound only)",
    "sound only": "has no picture, only sound",
    "cut off": "is damaged: ffprobe cannot read it",
    "garbled": "is damaged: its picture cannot be decoded",
    "damaged picture": "is damaged",
    "animated": "is an animated WebP; a still picture",
    "tiny": "is 32×32 px; at least 64 px a side is needed",
    "empty": "is empty",
    "too large": "KB; at most 10 KB is accepted ([limits] max_media_bytes)",
    "too long": "lasts 3 s; a clip may last at most 2 s ([limits] max_media_seconds): trim it",
}
LIMITS = LimitsConfig(max_media_bytes=10 * 1024, max_media_seconds=2.0)


@pytest.mark.parametrize("kind", list(REFUSALS))
async def test_each_bad_media_file_is_one_line_naming_scene_and_problem(
    tmp_path: Path, kind: str
) -> None:
    name = bad_media(tmp_path, kind)
    script = parse_script(f"# T\n## 1\nFine.\n## 2\nmedia: {name}\nBroken.\n", filename="s.md")
    cache = ArtifactCache(tmp_path / "cache")
    with pytest.raises(ScriptError) as caught:
        await prepare_media(script, FolderMedia(tmp_path), cache, LIMITS)
    message = str(caught.value)
    assert message.startswith(f"line 4 (scene 2): media '{name}' "), message
    assert REFUSALS[kind] in message, message
    assert "\n" not in message
    assert cache.size() == 0  # nothing refused is kept


async def test_good_media_is_described_and_kept_by_content(tmp_path: Path) -> None:
    make_picture(tmp_path / "photo.jpg", (300, 200))
    (tmp_path / "again.jpg").write_bytes((tmp_path / "photo.jpg").read_bytes())
    make_clip(tmp_path / "clip.mov", seconds=1.5, tone=440)
    make_clip(tmp_path / "silent.webm", seconds=1.0)
    script = parse_script(
        "## 1\nmedia: photo.jpg\nA.\n## 2\nmedia: clip.mov\nB.\n## 3\nmedia: again.jpg\nC.\n"
        "## 4\nmedia: silent.webm\nD.\n## 5\nE.\n", filename="s.md",
    )  # fmt: skip
    cache = ArtifactCache(tmp_path / "cache")
    media = await prepare_media(script, FolderMedia(tmp_path), cache, LimitsConfig())
    assert sorted(media) == [1, 2, 3, 4]
    photo, clip, again, silent = media[1], media[2], media[3], media[4]
    assert (photo.kind, photo.width, photo.height, photo.seconds) == ("picture", 300, 200, None)
    assert (clip.kind, clip.width, clip.height, clip.sound) == ("video", 320, 240, True)
    assert clip.seconds is not None and abs(clip.seconds - 1.5) < 0.1
    assert (silent.kind, silent.sound) == ("video", False)
    # By content: the same bytes under two names are one file, named by their sha256.
    assert again.path == photo.path and again.name == "again.jpg"
    digest = hashlib.sha256((tmp_path / "photo.jpg").read_bytes()).hexdigest()
    assert photo.path.name == f"{digest}.jpg"
    assert photo.path.parent.parent.name == "media"
    # Counted under the cache's size cap.
    assert cache.size() == sum(p.stat().st_size for p in {photo.path, clip.path, silent.path})


async def test_a_photo_turned_by_its_exif_tag_is_kept_upright(tmp_path: Path) -> None:
    make_picture(tmp_path / "phone.jpg", (400, 200), orientation=6)  # "rotate 90° to view"
    script = parse_script("## 1\nmedia: phone.jpg\nA photo.\n", filename="s.md")
    cache = ArtifactCache(tmp_path / "cache")
    media = (await prepare_media(script, FolderMedia(tmp_path), cache, LimitsConfig()))[1]
    assert (media.width, media.height) == (200, 400)
    with Image.open(media.path) as kept:
        assert kept.size == (200, 400)


# ---------------------------------------------------------------- pins


async def test_pinned_media_outlives_eviction_until_unpinned(tmp_path: Path) -> None:
    make_picture(tmp_path / "photo.jpg")
    script = parse_script("## 1\nmedia: photo.jpg\nA.\n", filename="s.md")
    cache = ArtifactCache(tmp_path / "cache")
    async with cache.writing("clip", "c" * 32, ".mp4") as temp:
        temp.write_bytes(b"x" * 5000)
    with cache.pinning("job-7") as pin:
        media = await prepare_media(script, FolderMedia(tmp_path), cache, LimitsConfig(), pin=pin)
        kept = media[1].path
        os.utime(kept, (1_000, 1_000))  # the oldest artifact: first to go, but pinned
        assert cache.pinned() == {kept.resolve()}
        removed = cache.evict(0)
        assert kept.is_file() and removed == [cache.path("clip", "c" * 32, ".mp4")]
        assert cache.size() == kept.stat().st_size  # still counted
    assert cache.pinned() == set()
    assert cache.evict(0) == [kept] and not kept.exists()


async def test_pins_hold_across_processes_and_die_with_a_process(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    async with cache.writing("media", "a" * 64, ".jpg") as temp:
        temp.write_bytes(b"x" * 100)
    path = cache.path("media", "a" * 64, ".jpg")
    cache.pin("job-12", [path])  # a job's pin: no process, lasts until unpinned
    # Another process (another ArtifactCache on the same folder) sees it.
    assert ArtifactCache(tmp_path / "cache").pinned() == {path.resolve()}
    cache.unpin("job-12")
    dead = subprocess.Popen(["true"])
    dead.wait()
    cache.pin("cli-crashed", [path], pid=dead.pid)  # its process is gone: a stale pin
    assert cache.pinned() == set()
    assert not (tmp_path / "cache" / ".pins" / "cli-crashed.json").exists()
    with pytest.raises(ValueError, match="pin owner"):
        cache.pin("../job", [path])


# ---------------------------------------------------------------- before any paid request


async def test_bad_media_stops_the_cli_before_any_paid_request(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    name = bad_media(project, "garbled")
    script = project / "video.md"
    script.write_text(f"# T\n## 1\nimage: a kettle\nPaid.\n## 2\nmedia: {name}\nBroken.\n")
    async with FakeTogether(expected_key="k-123") as together:
        code, output = await reelbot_async(
            "render", str(script), "-o", str(tmp_path / "v.mp4"), data=tmp_path / "data",
            TOGETHER_API_KEY="k-123", REELBOT_IMAGES__BASE_URL=together.base_url, **FAST,
        )  # fmt: skip
        assert together.requests == []
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: line 5 (scene 2): media 'garbled.mp4' is damaged")
    assert not (tmp_path / "v.mp4").exists()
