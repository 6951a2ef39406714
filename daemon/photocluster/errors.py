"""The project's error hierarchy. Only `cli.main` turns these into exit codes."""

from __future__ import annotations


class PhotoclusterError(Exception):
    """Base of every error a person can act on."""


class ConfigError(PhotoclusterError):
    """The configuration is invalid; `problems` lists every one, each with its dotted key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        if len(problems) == 1:  # a file that cannot be read or parsed: one line
            super().__init__(f"invalid configuration in {source}: {problems[0]}")
            return
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class BadPhotoError(PhotoclusterError):
    """One file could not be used as a photo; `reason` is a one-line explanation."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class WeightsError(PhotoclusterError):
    """No usable VGG16 ImageNet weights could be found or fetched."""


class LockedError(PhotoclusterError):
    """Another photocluster process holds the state directory's writer lock."""


class SignalError(PhotoclusterError):
    """A running daemon could not be signalled (it runs as another user)."""


class StateError(PhotoclusterError):
    """The state directory (catalog, index, cluster tree) cannot be used."""


class UsageError(PhotoclusterError):
    """A command cannot be carried out as given (a name that cannot be a folder's, a cluster
    or photo the catalog does not know); exits 2, like any other usage error."""
