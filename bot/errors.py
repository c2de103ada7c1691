"""The bot's own errors, in one tree beside the pipeline's (`pipeline/errors.py`).

    ReelbotError (pipeline)        `str(error)` is written for the person who asked
     ├── JobNotFound               no such job on this server: never made, forgotten, or another
     │                             server's ("job not found" is raised this one way)
     ├── JobTimedOut               a run went past `[queue] job_timeout` and was stopped
     ├── ReviewRefused             a review click that cannot act now; says why, and what to do
     ├── AdmissionRefused          a limit said no; `retry_after` is the seconds until it may not
     │    ├── QueueFull            `[queue] max_total`
     │    ├── UserLimitReached     `[queue] per_user_limit`
     │    ├── RateLimited          `[rate_limit] per_user`, `per_guild`
     │    └── ImageBudgetSpent     `[rate_limit] images_per_day`, `images_per_user_per_day`
     └── StoreUnreadable           the store's file cannot be opened (`python -m bot` exits 2)

    app_commands.CheckFailure (discord.py)
     └── Refusal                   who may do what, and where: a check or a click said no

The central error handler (`ReelBot.report_error`, `bot/app.py`) answers each of these with its
own words, ephemerally; anything else is logged in full and the user reads a short apology.
"""

from __future__ import annotations

from pathlib import Path

from discord import app_commands

from pipeline.errors import ReelbotError

from .text import format_duration

__all__ = [
    "AdmissionRefused",
    "ImageBudgetSpent",
    "JobNotFound",
    "JobTimedOut",
    "QueueFull",
    "RateLimited",
    "Refusal",
    "ReviewRefused",
    "StoreUnreadable",
    "UserLimitReached",
]


class Refusal(app_commands.CheckFailure):
    """A check said no; `str(refusal)` is the answer for the user."""


class JobNotFound(ReelbotError):
    """No job with this number here (it may have been forgotten, or be another server's)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"there is no job #{job_id} on this server (it may have been forgotten)")


class JobTimedOut(ReelbotError):
    """A run of the job went past `[queue] job_timeout`; it was stopped, as arq's `run_job`
    stops a job past its timeout. Time spent waiting for review is not a run."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        super().__init__(
            f"the render ran longer than {format_duration(limit)}, the limit for one job "
            "([queue] job_timeout), and was stopped"
        )


class ReviewRefused(ReelbotError):
    """A review action that cannot act now; the message says why (and what to do)."""


class AdmissionRefused(ReelbotError):
    """A limit said no. The message names the limit; `retry_after` is the seconds until it
    may say yes (None: when something else finishes)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(AdmissionRefused):
    pass


class UserLimitReached(AdmissionRefused):
    pass


class RateLimited(AdmissionRefused):
    pass


class ImageBudgetSpent(AdmissionRefused):
    pass


class StoreUnreadable(ReelbotError):
    """The store's file cannot be opened or is not a database the bot can use."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        super().__init__(
            f"the bot's store {path} is unreadable ({reason}); move it aside to start with "
            "an empty one, or restore it from a backup"
        )
