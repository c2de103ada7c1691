from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError

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
    assert bot_sections == {"discord", "queue", "rate_limit"}
    for section in bot_sections:
        model = BotSettings.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key in model.model_fields:
            assert key in documented.get(section, {}), f"{section}.{key}"
        # The documented values are the defaults.
        assert model(**documented[section]) == model()
