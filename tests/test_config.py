from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.plugins import plugin_sections

ROOT = Path(__file__).resolve().parents[1]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[images]\nbase_url = "http://file"\nsteps = 2\n[video]\naspect = "1:1"\n')
    monkeypatch.setenv("REELBOT_IMAGES__BASE_URL", "http://env")
    settings = load_settings(config)
    assert settings.images.base_url == "http://env"
    assert settings.images.steps == 2
    assert settings.video.aspect.value == "1:1"


def test_secrets_come_from_the_environment_and_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "tok-very-secret-123")
    settings = load_settings()
    assert settings.image_provider == "together"
    assert settings.secrets.together_api_key is not None
    assert settings.secrets.together_api_key.get_secret_value() == "tok-very-secret-123"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "tok-very-secret-123" not in text


def test_without_a_key_images_are_offline_cards() -> None:
    assert load_settings().image_provider == "card"


def test_secrets_in_the_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[secrets]\ntogether_api_key = "x"\n')
    with pytest.raises(ConfigError, match="environment variables"):
        load_settings(config)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[images\n", "not valid TOML"),
        ("[images]\nmax_concurrency = 0\n", "images.max_concurrency"),
        ("[images]\nwidht = 512\n", "images.widht"),
        ('[video]\naspect = "4:3"\n', "video.aspect"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, words: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings(config)


def test_example_config_documents_every_key() -> None:
    example = ROOT / "config.toml.example"
    documented = tomllib.loads(example.read_text())
    text = example.read_text()
    for section, field in Settings.model_fields.items():
        if field.exclude:
            continue
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        assert f"[{section}]" in text, section
        for key in model.model_fields:
            # Optional keys may be commented out, but must be present.
            assert key in documented.get(section, {}) or f"# {key} =" in text, f"{section}.{key}"
    assert load_settings(example) == Settings()


def test_example_config_documents_the_bot_sections() -> None:
    from bot.config import BotSettings

    example = ROOT / "config.toml.example"
    documented = tomllib.loads(example.read_text())
    bot_sections = set(BotSettings.model_fields) - set(Settings.model_fields)
    assert bot_sections == {"discord", "queue", "rate_limit", "redis"}
    for section in bot_sections:
        model = BotSettings.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key in model.model_fields:
            assert key in documented.get(section, {}), f"{section}.{key}"
        # The documented values are the defaults.
        assert model(**documented[section]) == model()


@pytest.mark.parametrize("table", ["secrets", "Secrets", "SECRETS", "sEcReTs"])
def test_a_secrets_table_in_any_case_is_refused(tmp_path: Path, table: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[{table}]\ntogether_api_key = "sk-from-the-file"\n')
    with pytest.raises(ConfigError, match="environment variables") as caught:
        load_settings(config)
    assert "sk-from-the-file" not in str(caught.value)


def test_a_key_inside_a_table_is_refused_too(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[images]\napi_key = "sk-from-the-file"\n')
    with pytest.raises(ConfigError, match=r"\[images\] api_key: secrets belong in environment"):
        load_settings(config)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[vidoe]\naspect = "16:9"\n', "unknown table [vidoe]; did you mean [video]?"),
        ('[Video]\naspect = "16:9"\n', "unknown table [Video]; did you mean [video]?"),
        ('aspect = "16:9"\n', "'aspect' is not inside a table; did you mean [video] aspect?"),
        ('aspekt = "16:9"\n', "did you mean [video] aspect?"),
        ("[images]\nwidht = 512\n", "images.widht: unknown key; did you mean 'width'?"),
        # A front end's table is checked even when only the pipeline reads the file.
        (
            "[discord]\nguild_idz = []\n",
            "discord.guild_idz: unknown key; did you mean 'guild_ids'?",
        ),
        ("[queue]\nmax_total = 0\n", "queue.max_total"),
        ("[nonsense]\nx = 1\n", "unknown table [nonsense]; known: [captions], "),
    ],
)
def test_unknown_tables_and_keys_say_what_was_meant(tmp_path: Path, text: str, words: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings(config)


def test_the_bot_tables_come_from_its_entry_point() -> None:
    """The front end declares its tables through the entry point that adds `reelbot bot`."""
    from bot.config import BotSettings

    sections = plugin_sections()
    assert set(sections) == {"discord", "queue", "rate_limit", "redis"}
    for name, model in sections.items():
        assert BotSettings.model_fields[name].annotation is model


def test_the_example_config_loads_for_the_bot_too() -> None:
    from bot.config import BotSettings

    assert load_settings(ROOT / "config.toml.example", BotSettings) == BotSettings()


@pytest.mark.parametrize(
    ("variable", "words"),
    [
        ("REELBOT_VIDOE__ASPECT", "did you mean REELBOT_VIDEO__ASPECT?"),
        ("REELBOT_VIDEO", "use REELBOT_VIDEO__KEY"),
        ("REELBOT_ASPECT", "sets nothing"),
    ],
)
def test_an_environment_variable_that_sets_nothing_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, words: str
) -> None:
    monkeypatch.setenv(variable, "16:9")
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings()


@pytest.mark.parametrize("pasted", ["sk-abc123\n", "  sk-abc123\t", "\r\nsk-abc123 \n"])
def test_a_key_is_stripped_of_surrounding_white_space(
    monkeypatch: pytest.MonkeyPatch, pasted: str
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", pasted)
    monkeypatch.setenv("TTS_API_KEY", pasted)
    secrets = load_settings().secrets
    assert secrets.together_api_key is not None and secrets.tts_api_key is not None
    assert secrets.together_api_key.get_secret_value() == "sk-abc123"
    assert secrets.tts_api_key.get_secret_value() == "sk-abc123"


def test_a_blank_key_counts_as_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", " \n")
    assert load_settings().image_provider == "card"


@pytest.mark.parametrize("inside", ["\n", "\x01", "\x1b[31m", "\x7f", "\u0085", "é"])
@pytest.mark.parametrize("variable", ["TOGETHER_API_KEY", "TTS_API_KEY"])
def test_a_key_with_a_bad_character_inside_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, inside: str
) -> None:
    monkeypatch.setenv(variable, f"sk-abc{inside}123")
    config = tmp_path / "c.toml"
    config.write_text("[images]\nsteps = 2\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert message.startswith(f"{variable} contains ")
    assert "cannot be part of a key" in message
    assert "sk-abc" not in message and "123" not in message
