from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings

SECRET_VARS = ("TOGETHER_API_KEY", "TTS_API_KEY", "LLM_API_KEY", "DISCORD_TOKEN")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never see the developer's own keys or REELBOT_* overrides."""
    import os

    for name in list(os.environ):
        if name.startswith("REELBOT_") or name in SECRET_VARS:
            monkeypatch.delenv(name)
    yield


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings on a temporary data dir; keyword sections override the defaults,
    e.g. make_settings(images={"provider": "together", "base_url": url}). Speech is espeak-ng
    unless a test names its provider (the shipped default, "auto", is Piper when installed)."""

    def factory(**sections: Any) -> Settings:
        sections.setdefault("storage", {"data_dir": str(tmp_path / "data")})
        sections["tts"] = {"provider": "espeak", **sections.get("tts", {})}
        return Settings(**sections)

    return factory
