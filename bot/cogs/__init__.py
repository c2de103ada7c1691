"""The bot's features, one cog per file (loaded by `ReelBot.setup_hook`)."""
