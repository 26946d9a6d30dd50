"""The exception the native module raises; its message names the file, line or key."""


class DryciError(Exception):
    """A DryCI failure: bad configuration, unreadable repository, cache failure in strict mode."""
