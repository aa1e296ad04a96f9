"""User-facing errors.

Every mistake a user can make (bad genotype, unknown primitive, wrong config key,
missing dataset, corrupt checkpoint) raises a subclass of :class:`BnnNasError`
whose message is one line naming the problem and the fix. The CLI turns these
into that line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations


class BnnNasError(Exception):
    """A problem with the user's input; the message is shown as-is."""

    def line(self) -> str:
        """What is shown: the message's first line (the class name when it is empty)."""
        text = str(self)
        return text.splitlines()[0] if text else type(self).__name__


class ConfigError(BnnNasError):
    """A config file or option is invalid."""


class PrimitiveError(BnnNasError):
    """An unknown, duplicate or badly configured primitive."""


class PluginError(BnnNasError):
    """A plugin file or module could not be loaded."""


class GenotypeError(BnnNasError):
    """A genotype is malformed or does not fit the search space."""


class DataError(BnnNasError):
    """A dataset is missing, corrupt or cannot be fetched."""


class CheckpointError(BnnNasError):
    """A checkpoint or results file is missing, truncated or foreign."""
