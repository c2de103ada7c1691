"""The bot's features, one cog per file, loaded by `ReelBot.setup_hook` from `app.EXTENSIONS`.

A cog owns its pieces: its commands, its modals, and its buttons, which it registers when it
loads (`bot.add_dynamic_items`, and `bot.presenters.controls` for the buttons on a job's
messages: see `review.py`). It reaches the queue through `bot.runner` and the store through
`bot.store`; its errors are answered by `ReelBot.report_error`.
"""
