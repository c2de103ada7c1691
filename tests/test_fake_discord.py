"""Drive an unmodified discord.py ``commands.Bot`` against the fake Discord server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import warnings
from collections.abc import AsyncIterator

import pytest
import yarl

from tests.fakes.discord import (
    AttachmentSpec,
    ChannelSpec,
    FakeDiscord,
    GuildSpec,
    MemberSpec,
    Perm,
    RoleSpec,
    UserSpec,
)

# discord.py imports the stdlib ``audioop`` (deprecated in 3.11+); pytest runs with
# filterwarnings=error, so silence exactly that warning while importing it.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.ext import commands
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    from bot.delivery import upload_limit_for

VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


class VoteView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Yes", custom_id="vote:yes", style=discord.ButtonStyle.success)
    async def yes(
        self, interaction: discord.Interaction[EchoBot], button: discord.ui.Button[VoteView]
    ) -> None:
        await interaction.response.edit_message(
            content=f"{interaction.user.name} voted yes", view=None
        )

    async def on_error(  # type: ignore[override]
        self,
        interaction: discord.Interaction[EchoBot],
        error: Exception,
        item: discord.ui.Item[VoteView],
    ) -> None:
        interaction.client.errors.append(error)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(
        label="Your feedback", custom_id="feedback:text"
    )

    async def on_submit(self, interaction: discord.Interaction[EchoBot]) -> None:  # type: ignore[override]
        interaction.client.modal_submissions.append(self.text.value)
        await interaction.response.send_message(f"thanks: {self.text.value}", ephemeral=True)

    async def on_error(self, interaction: discord.Interaction[EchoBot], error: Exception) -> None:  # type: ignore[override]
        interaction.client.errors.append(error)


class UploadModal(discord.ui.Modal, title="Upload"):
    def __init__(self, max_values: int) -> None:
        super().__init__()
        self.files: discord.ui.FileUpload[UploadModal] = discord.ui.FileUpload(
            custom_id="upload:files", min_values=1, max_values=max_values
        )
        self.add_item(discord.ui.Label(text="Your files", component=self.files))

    async def on_submit(self, interaction: discord.Interaction[EchoBot]) -> None:  # type: ignore[override]
        await interaction.response.defer(ephemeral=True, thinking=True)
        for attachment in self.files.values:
            interaction.client.uploads[attachment.filename] = await attachment.read()
        await interaction.followup.send(f"got {len(self.files.values)}", ephemeral=True)

    async def on_error(self, interaction: discord.Interaction[EchoBot], error: Exception) -> None:  # type: ignore[override]
        interaction.client.errors.append(error)


@app_commands.command(description="Upload files through a modal")
async def upload(interaction: discord.Interaction[EchoBot], most: int = 2) -> None:
    await interaction.response.send_modal(UploadModal(most))


@app_commands.command(description="Echo an attachment back through a thread")
async def echo(
    interaction: discord.Interaction[EchoBot], file: discord.Attachment, note: str = "echo"
) -> None:
    await interaction.response.defer(thinking=True)
    data = await file.read()
    channel = interaction.channel
    assert isinstance(channel, discord.TextChannel)
    status = await channel.send(f"{note}: got {file.filename} ({len(data)} bytes)")
    for step in (1, 2, 3):
        status = await status.edit(content=f"{note}: step {step}/3")
    thread = await status.create_thread(name=f"{note}-{file.filename}")
    await thread.send(
        "echoed file", file=discord.File(io.BytesIO(data), filename=f"echo-{file.filename}")
    )
    await interaction.followup.send(f"done in {thread.mention}")
    interaction.client.completed.append("echo")


@app_commands.command(description="Send feedback through a modal")
async def feedback(interaction: discord.Interaction[EchoBot]) -> None:
    await interaction.response.send_modal(FeedbackModal())
    interaction.client.completed.append("feedback")  # the modal is registered by now


@app_commands.command(description="Vote with a button")
async def vote(interaction: discord.Interaction[EchoBot]) -> None:
    await interaction.response.send_message("vote?", view=VoteView())
    interaction.client.completed.append("vote")  # the view is registered by now


class EchoBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
        )
        self.guild_id = guild_id
        self.errors: list[BaseException] = []
        self.modal_submissions: list[str] = []
        self.uploads: dict[str, bytes] = {}  # files sent through a modal's file upload
        self.completed: list[str] = []  # commands whose handler returned
        self.resumed = asyncio.Event()
        self.tree.error(self._on_tree_error)

    async def setup_hook(self) -> None:
        self.tree.add_command(echo)
        self.tree.add_command(feedback)
        self.tree.add_command(vote)
        self.tree.add_command(upload)
        guild = discord.Object(id=self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)

    async def _on_tree_error(
        self, interaction: discord.Interaction[EchoBot], error: app_commands.AppCommandError
    ) -> None:
        self.errors.append(error)

    async def on_resumed(self) -> None:
        self.resumed.set()


CREATOR = RoleSpec("Creator", permissions=Perm.ATTACH_FILES)
ALICE = UserSpec("alice")


def make_guild() -> GuildSpec:
    return GuildSpec(
        name="Reel Studio",
        channels=[ChannelSpec("general"), ChannelSpec("renders")],
        roles=[CREATOR],
        members=[MemberSpec(ALICE, roles=[CREATOR])],
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(guilds=[make_guild()]) as server:
        server.install()
        yield server
        assert server.unhandled == []
        assert server.server_errors == []


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord) -> AsyncIterator[EchoBot]:
    """Log in, connect, wait for on_ready; close cleanly and check no handler failed."""
    bot = EchoBot(guild_id=fake.guilds[0].id)
    await bot.login(fake.token)
    runner = asyncio.create_task(bot.connect())
    try:
        await asyncio.wait_for(bot.wait_until_ready(), timeout=10)
        yield bot
    finally:
        await bot.close()
        await runner
    assert bot.errors == []


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[EchoBot]:
    async with running_bot(fake) as running:
        yield running


def general(fake: FakeDiscord) -> int:
    return fake.guilds[0].channel("general").id


async def test_login_ready_and_guild_command_sync(fake: FakeDiscord, bot: EchoBot) -> None:
    assert bot.user is not None and bot.user.id == fake.bot_user.id
    assert bot.application_id == fake.application_id
    guild = bot.get_guild(fake.guilds[0].id)
    assert guild is not None and guild.name == "Reel Studio"
    assert {c.name for c in guild.text_channels} == {"general", "renders"}
    assert guild.me is not None and guild.me.id == fake.bot_user.id
    assert discord.utils.get(guild.roles, name="Creator") is not None

    assert fake.state.identifies[0]["token"] == fake.token
    connection = fake.gateway.connections[0]
    assert connection["v"] == "10" and connection["encoding"] == "json"
    assert connection["compress"] == discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE

    synced = fake.commands[fake.guilds[0].id]
    assert sorted(c["name"] for c in synced) == ["echo", "feedback", "upload", "vote"]
    echo_options = next(c for c in synced if c["name"] == "echo")["options"]
    assert [(o["name"], o["type"], o.get("required")) for o in echo_options] == [
        ("file", 11, True),
        ("note", 3, False),
    ]


async def test_echo_defers_downloads_posts_edits_threads_and_uploads(
    fake: FakeDiscord, bot: EchoBot
) -> None:
    attachment = AttachmentSpec("clip.mp4", VIDEO_BYTES)
    handle = await fake.send_slash_command(
        "echo", {"file": attachment, "note": "render"}, member="alice"
    )

    response = await handle.wait_response(timeout=3)
    assert response.type == 5 and response.elapsed < 3

    followups = await handle.wait_followups(1)
    assert followups[0].content.startswith("done in <#")
    assert fake.state.cdn_downloads == [attachment.id]

    status = next(m for m in fake.messages[general(fake)] if m.interaction_id is None)
    assert [r.content for r in status.revisions] == [
        f"render: got clip.mp4 ({len(VIDEO_BYTES)} bytes)",
        "render: step 1/3",
        "render: step 2/3",
        "render: step 3/3",
    ]
    times = [r.at for r in status.revisions]
    assert times == sorted(times)

    thread = fake.threads[status.id]
    assert (thread.parent_id, thread.name, thread.starter_message_id) == (
        general(fake),
        "render-clip.mp4",
        status.id,
    )
    [upload] = fake.uploads
    assert (upload.filename, upload.data, upload.channel_id) == (
        "echo-clip.mp4",
        VIDEO_BYTES,
        thread.id,
    )
    [in_thread] = fake.messages[thread.id]
    assert in_thread.attachments[0]["filename"] == "echo-clip.mp4"
    assert followups[0].id == handle.original_message_id  # replaced the "thinking" message


async def test_rate_limited_edit_is_absorbed(fake: FakeDiscord, bot: EchoBot) -> None:
    fake.fail_next("edit_message", 429, retry_after=0.3)
    handle = await fake.send_slash_command("echo", {"file": AttachmentSpec("a.txt", b"hello")})
    await handle.wait_followups(1)

    statuses = [r.status for r in fake.requests_of("edit_message")]
    assert statuses == [429, 200, 200, 200]
    rejected, retried = fake.requests_of("edit_message")[:2]
    assert retried.at - rejected.at >= 0.3
    status = next(m for m in fake.messages[general(fake)] if m.interaction_id is None)
    assert status.content == "echo: step 3/3" and len(status.edits) == 3


async def test_oversized_upload_surfaces_code_40005(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = bot.get_channel(general(fake))
    assert isinstance(channel, discord.TextChannel)
    fake.fail_next("create_message_with_files", 413, code=40005, message="Request entity too large")
    with pytest.raises(discord.HTTPException) as forced:
        await channel.send(file=discord.File(io.BytesIO(b"x"), filename="x.bin"))
    assert (forced.value.status, forced.value.code) == (413, 40005)

    fake.knobs.upload_size_limit = 1024
    with pytest.raises(discord.HTTPException) as by_limit:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 2048), filename="big.bin"))
    assert by_limit.value.code == 40005
    assert fake.uploads == []

    sent = await channel.send("no file, no problem")  # plain messages are unaffected
    assert fake.message(sent.id).content == "no file, no problem"


async def test_modal_submit_reaches_on_submit(fake: FakeDiscord, bot: EchoBot) -> None:
    opened = await fake.send_slash_command("feedback")
    assert (await opened.wait_response()).type == 9
    assert opened.modal is not None and opened.modal["title"] == "Feedback"
    await fake.wait_for(lambda: "feedback" in bot.completed, what="/feedback to finish")

    submitted = await fake.submit_modal(opened, {"feedback:text": "lovely reels"})
    reply = await submitted.wait_response()
    assert bot.modal_submissions == ["lovely reels"]
    assert (reply.type, reply.content) == (4, "thanks: lovely reels")
    assert submitted.original is not None and submitted.original.ephemeral


async def test_a_file_upload_is_submitted_in_the_published_shape(
    fake: FakeDiscord, bot: EchoBot
) -> None:
    opened = await fake.send_slash_command("upload")
    assert (await opened.wait_response()).type == 9
    assert opened.modal is not None
    [label] = opened.modal["components"]
    assert (label["type"], label["component"]["type"]) == (18, 19)  # a label holding it
    files = [AttachmentSpec("a.png", b"\x89PNG one"), AttachmentSpec("b.png", b"\x89PNG two")]
    # More files than it takes, or none for a required one: the client would not send it.
    with pytest.raises(ValueError, match="takes 1 to 2 files, not 3"):
        await fake.submit_modal(opened, {"upload:files": [*files, AttachmentSpec("c.png")]})
    with pytest.raises(ValueError, match="is required"):
        await fake.submit_modal(opened, {"upload:files": []})

    submitted = await fake.submit_modal(opened, {"upload:files": files})
    [reply] = await submitted.wait_followups(1)
    assert reply.content == "got 2"
    assert bot.uploads == {"a.png": b"\x89PNG one", "b.png": b"\x89PNG two"}
    data = submitted.payload["data"]
    [sent] = data["components"]
    assert sent["type"] == 18 and sent["component"]["type"] == 19
    assert sent["component"]["values"] == [str(f.id) for f in files]
    assert set(data["resolved"]["attachments"]) == {str(f.id) for f in files}


async def test_a_modal_over_the_published_limits_is_refused(
    fake: FakeDiscord, bot: EchoBot
) -> None:
    opened = await fake.send_slash_command("upload", {"most": 11})  # at most 10 files
    await fake.wait_for(lambda: bot.errors, what="the refusal")
    assert not opened.acknowledged
    [error] = bot.errors
    original = getattr(error, "original", error)
    assert isinstance(original, discord.HTTPException) and original.code == 50035
    bot.errors.clear()


async def test_button_click_updates_the_message(fake: FakeDiscord, bot: EchoBot) -> None:
    asked = await fake.send_slash_command("vote")
    await asked.wait_response()
    message = asked.original
    assert message is not None and message.content == "vote?"
    # The fake records the callback before discord.py has read the HTTP response and
    # registered the view; a user could not click that fast, so wait for the bot.
    await fake.wait_for(lambda: "vote" in bot.completed, what="/vote to finish")

    clicked = await fake.click_button(message, "vote:yes", member="alice")
    assert (await clicked.wait_response()).type == 7
    assert message.content == "alice voted yes"
    assert message.components == [] and len(message.edits) == 1


async def test_old_message_edits_fail_with_30046(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = bot.get_channel(general(fake))
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("progress 0%")
    fake.limit_old_message_edits(older_than=0.0)
    with pytest.raises(discord.HTTPException) as caught:
        await sent.edit(content="progress 50%")
    assert (caught.value.status, caught.value.code) == (400, 30046)
    assert fake.message(sent.id).content == "progress 0%"


async def test_late_interaction_response_is_unknown(fake: FakeDiscord, bot: EchoBot) -> None:
    fake.knobs.interaction_deadline = 0.0
    handle = await fake.send_slash_command("vote")
    await fake.wait_for(lambda: bot.errors, what="the bot's error handler")
    error = bot.errors.pop()
    assert isinstance(error, app_commands.CommandInvokeError)
    assert isinstance(error.original, discord.NotFound) and error.original.code == 10062
    assert not handle.acknowledged


async def test_gateway_reconnect_resumes(fake: FakeDiscord, bot: EchoBot) -> None:
    await fake.request_reconnect()
    await asyncio.wait_for(bot.resumed.wait(), timeout=10)
    assert fake.state.resumes == 1
    assert len(fake.gateway.connections) == 2
    handle = await fake.send_slash_command("vote")  # dispatches still reach the bot
    assert (await handle.wait_response()).type == 4


async def test_unknown_routes_are_recorded(fake: FakeDiscord, bot: EchoBot) -> None:
    with pytest.raises(discord.NotFound):
        await bot.http.request(Route("GET", "/not/a/route"))
    assert fake.unhandled == ["GET /api/v10/not/a/route"]
    fake.unhandled.clear()


async def test_wrong_token_is_a_login_failure(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()


async def test_bot_configured_from_env_without_install(
    fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.uninstall()
    env = fake.env()
    monkeypatch.setattr(Route, "BASE", env["REELBOT_DISCORD__API_BASE"])
    monkeypatch.setattr(
        DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(env["REELBOT_DISCORD__GATEWAY_URL"])
    )
    async with running_bot(fake) as running:
        assert running.get_guild(fake.guilds[0].id) is not None


async def test_threads_history_delete_and_user_messages(fake: FakeDiscord, bot: EchoBot) -> None:
    channel = bot.get_channel(fake.guilds[0].channel("renders").id)
    assert isinstance(channel, discord.TextChannel)
    thread = await channel.create_thread(name="renders-log", type=discord.ChannelType.public_thread)
    assert fake.threads[thread.id].starter_message_id is None
    await fake.wait_for(lambda: bot.get_channel(thread.id), what="THREAD_CREATE to reach the bot")
    posted = await thread.send("first")

    fake.delay_next("get_messages", 0.2)
    history = [m.content async for m in thread.history(limit=10)]
    assert history == ["first"]
    assert fake.requests_of("get_messages")[0].status == 200

    await posted.delete()
    assert fake.message(posted.id).deleted
    assert [m async for m in thread.history(limit=10)] == []

    seen = asyncio.ensure_future(bot.wait_for("message", check=lambda m: not m.author.bot))
    typed = await fake.post_user_message("hello bot", channel="renders", member="alice")
    received = await asyncio.wait_for(seen, timeout=5)
    assert (received.id, received.author.name) == (typed.id, "alice")


async def test_uploads_are_bound_by_each_guilds_boost_level() -> None:
    """As Discord has it (tests/contracts/discord-limits.yaml) and discord.py computes it
    (Guild.filesize_limit from premium_tier): 10 MiB at levels 0 and 1, 50 MiB at level 2."""
    plain = make_guild()
    boosted = GuildSpec(name="Boosted", premium_tier=2, channels=[ChannelSpec("general")],
                        members=[MemberSpec(UserSpec("bob"))])  # fmt: skip
    mib = 1024 * 1024
    async with FakeDiscord(guilds=[plain, boosted]) as fake:
        fake.install()
        async with running_bot(fake) as bot:
            for spec, limit in ((plain, 10 * mib), (boosted, 50 * mib)):
                guild = bot.get_guild(spec.id)
                assert guild is not None and guild.premium_tier == spec.premium_tier
                assert guild.filesize_limit == upload_limit_for(guild) == limit
            assert upload_limit_for(None) == 10 * mib  # a direct message
            just_over = b"x" * (10 * mib + 1)
            to_plain = bot.get_channel(plain.channel("general").id)
            to_boosted = bot.get_channel(boosted.channel("general").id)
            assert isinstance(to_plain, discord.TextChannel)
            assert isinstance(to_boosted, discord.TextChannel)
            with pytest.raises(discord.HTTPException) as refused:
                await to_plain.send(file=discord.File(io.BytesIO(just_over), filename="a.bin"))
            assert (refused.value.status, refused.value.code) == (413, 40005)
            sent = await to_boosted.send(file=discord.File(io.BytesIO(just_over), "a.bin"))
            assert sent.attachments[0].size == len(just_over)
            # What a user may upload (their Nitro included) is the interaction's, not the bot's.
            handle = await fake.send_slash_command(
                "echo", {"file": AttachmentSpec("n.txt", b"hi")}, guild=plain,
                attachment_size_limit=500 * mib,
            )  # fmt: skip
            assert handle.payload["attachment_size_limit"] == 500 * mib
            await handle.wait_response()


async def test_embeds_over_the_published_limits_are_refused(
    fake: FakeDiscord, bot: EchoBot
) -> None:
    channel = bot.get_channel(general(fake))
    assert isinstance(channel, discord.TextChannel)
    for embed, where in [
        (discord.Embed(title="t" * 257), ("embeds", "0", "title")),
        (discord.Embed(description="d" * 4097), ("embeds", "0", "description")),
        (discord.Embed().add_field(name="n", value="v" * 1025), ("embeds", "0", "fields")),
        (discord.Embed(description="d" * 4000).set_footer(text="f" * 2001), ("embeds",)),
    ]:
        with pytest.raises(discord.HTTPException) as refused:
            await channel.send(embed=embed)
        assert (refused.value.status, refused.value.code) == (400, 50035)
        assert where[-1] in refused.value.text or where[-1] in str(refused.value)
    await channel.send(embed=discord.Embed(title="t" * 256, description="d" * 4096))


async def test_direct_messages_and_a_user_who_refuses_them(fake: FakeDiscord, bot: EchoBot) -> None:
    """Create DM (POST /users/@me/channels) gives the same channel each time; sending in it
    is recorded; a user whose privacy settings refuse DMs makes the send fail with 50007."""
    dm = await bot.create_dm(discord.Object(ALICE.id))
    again = await bot.http.start_private_message(ALICE.id)
    assert int(again["id"]) == dm.id and again["type"] == 1
    assert [int(u["id"]) for u in again["recipients"]] == [ALICE.id]
    await dm.send("your video", file=discord.File(io.BytesIO(VIDEO_BYTES), filename="v.mp4"))
    [sent] = fake.dms_with(ALICE)
    assert sent.content == "your video" and "guild_id" not in sent.data
    assert [u.filename for u in fake.uploads if u.message_id == sent.id] == ["v.mp4"]

    fake.refuse_dms(ALICE)
    with pytest.raises(discord.Forbidden) as refused:
        await dm.send("again")
    assert refused.value.code == 50007 and refused.value.status == 403
    assert len(fake.dms_with(ALICE)) == 1
    with pytest.raises(discord.NotFound) as unknown:
        await bot.http.start_private_message(424242)
    assert unknown.value.code == 10013


def _form(*components: dict[str, object]) -> dict[str, object]:
    return {"custom_id": "f", "title": "Form", "components": list(components)}


def _label(component: dict[str, object], text: str = "Field") -> dict[str, object]:
    return {"type": 18, "label": text, "component": component}


ONE_OPTION = [{"value": "a", "label": "A"}]
RADIO = {"type": 21, "custom_id": "r", "options": [
    {"value": "a", "label": "A"}, {"value": "b", "label": "B", "default": True}]}  # fmt: skip
BOXES = {"type": 22, "custom_id": "c", "required": False, "min_values": 0, "max_values": None,
         "options": [{"value": "x", "label": "X", "default": True},
                     {"value": "y", "label": "Y"}]}  # fmt: skip
UPLOAD = {"type": 19, "custom_id": "u", "required": False, "min_values": 0, "max_values": 2}
TEXT = {"type": 4, "custom_id": "t", "style": 2, "required": False, "max_length": 10}


@pytest.mark.parametrize(
    ("modal", "field"),
    [
        (_form(*[_label({**TEXT, "custom_id": f"t{n}"}) for n in range(6)]), "data.components"),
        (_form(_label(RADIO, "x" * 46)), "data.components.0.label"),
        (_form(_label({**RADIO, "options": ONE_OPTION})), "data.components.0.component.options"),
        (_form(_label({**UPLOAD, "max_values": 11})), "data.components.0.component.max_values"),
        (_form(_label({**UPLOAD, "required": True})), "data.components.0.component.min_values"),
        (_form(_label(TEXT), _label(TEXT)), "data.components.1.component.custom_id"),
        (_form(UPLOAD), "data.components.0.type"),
        ({**_form(_label(TEXT)), "title": "x" * 46}, "data.title"),
    ],
)
def test_a_modal_discord_would_refuse_is_refused(modal: dict[str, object], field: str) -> None:
    from tests.fakes.discord.messages import ApiError
    from tests.fakes.discord.modals import validate_modal

    validate_modal(_form(_label(RADIO), _label(BOXES), _label(UPLOAD), _label(TEXT)))  # fine
    with pytest.raises(ApiError) as refused:
        validate_modal(modal)
    assert refused.value.code == 50035
    errors = refused.value.errors
    for part in field.split("."):
        assert errors is not None and part in errors, (field, refused.value.errors)
        errors = errors[part]


def test_a_submit_carries_the_published_shapes_and_the_prefilled_defaults() -> None:
    from tests.fakes.discord.modals import ModalAnswer

    modal = _form(_label(UPLOAD), _label(TEXT), _label(RADIO), _label(BOXES))
    files = [AttachmentSpec("a.md", b"# A"), AttachmentSpec("b.png", b"png")]
    answer = ModalAnswer(modal, {"u": files, "t": "0123456789abc"}, lambda a: ("u", "p"))
    data = answer.data()
    upload, text, radio, boxes = (c["component"] for c in data["components"])
    assert [c["type"] for c in data["components"]] == [18] * 4
    assert upload == {"type": 19, "id": upload["id"], "custom_id": "u",
                      "values": [str(f.id) for f in files]}  # fmt: skip
    assert set(data["resolved"]["attachments"]) == {str(f.id) for f in files}
    assert text["value"] == "0123456789"  # a client's box keeps max_length characters
    assert radio["value"] == "b" and boxes["values"] == ["x"]  # as pre-filled
    for wrong in ({"r": "z"}, {"c": ["z"]}, {"u": files * 2}):
        with pytest.raises(ValueError):
            ModalAnswer(modal, wrong, lambda a: ("u", "p")).data()
