"""A fake Discord (REST, gateway and CDN) on 127.0.0.1 that a real, unmodified discord.py bot
talks to: only what reelbot calls, checked against Discord's published limits
(tests/contracts/discord-limits.yaml). Its scope and its pieces: README.md beside this file.

    from tests.fakes.discord import FakeDiscord, GuildSpec
"""

from .models import (
    AttachmentSpec,
    ChannelSpec,
    ChannelType,
    GuildSpec,
    MemberSpec,
    Perm,
    RoleSpec,
    UserSpec,
)
from .server import FakeDiscord
from .state import (
    CallbackRecord,
    InjectedInteraction,
    RecordedMessage,
    RequestRecord,
    Revision,
    ThreadRecord,
    Upload,
)

__all__ = [
    "AttachmentSpec",
    "CallbackRecord",
    "ChannelSpec",
    "ChannelType",
    "FakeDiscord",
    "GuildSpec",
    "InjectedInteraction",
    "MemberSpec",
    "Perm",
    "RecordedMessage",
    "RequestRecord",
    "Revision",
    "RoleSpec",
    "ThreadRecord",
    "Upload",
    "UserSpec",
]
