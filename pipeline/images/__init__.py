"""Image providers, chosen by `[images] provider`."""

from __future__ import annotations

import httpx

from ..config import Settings
from ..errors import ConfigError
from ..image_slot import image_keys
from .base import ImageProvider, ImageRequest
from .card import CardImages
from .together import TogetherImages

__all__ = ["CardImages", "ImageProvider", "ImageRequest", "TogetherImages", "make_images"]


def make_images(settings: Settings, client: httpx.AsyncClient) -> ImageProvider:
    if settings.image_provider == "card":
        return CardImages()
    if not settings.image_key_set:
        names = " or ".join(settings.images.keys)
        raise ConfigError(
            f"[images] provider is 'together' but {names} is not set in the environment"
        )
    # The first key is the provider's own; the image slot gives each request its key.
    key = image_keys(settings)[0]
    return TogetherImages(settings.images, client, api_key=key.secret,
                          key_variable=key.name, limits=settings.limits)  # fmt: skip
