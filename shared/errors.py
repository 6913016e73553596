"""Errors a user can cause. The CLI prints their message as one line and exits with code 2."""


class UserInputError(Exception):
    """A mistake in what the user gave us (missing file, bad column, bad option)."""


class EventDataError(UserInputError):
    """The events file is unreadable or does not follow the event schema."""
