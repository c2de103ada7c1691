"""Image providers, chosen by `[images] provider`."""

from __future__ import annotations

import httpx

from ..config import Settings
from ..errors import ConfigError
from .base import ImageProvider, ImageRequest
from .card import CardImages
from .together import TogetherImages

__all__ = ["CardImages", "ImageProvider", "ImageRequest", "TogetherImages", "make_images"]


def make_images(settings: Settings, client: httpx.AsyncClient) -> ImageProvider:
    if settings.image_provider == "card":
        return CardImages()
    key = settings.secrets.together_api_key
    if key is None:
        raise ConfigError(
            "[images] provider is 'together' but TOGETHER_API_KEY is not set in the environment"
        )
    return TogetherImages(settings.images, client, api_key=key.get_secret_value(),
                          limits=settings.limits)  # fmt: skip
