"""User-facing errors: the CLI prints these as one `error: ...` line and exits 2.

Anything else that escapes is a bug and keeps its traceback.
"""


class DomainLMError(Exception):
    """A mistake the user can fix; the message says what is wrong, the bad value and the fix."""


class ConfigError(DomainLMError):
    """A YAML file, a --set override or a flag is invalid."""


class DataError(DomainLMError):
    """Input data is missing, unreadable, malformed or too small for what was asked."""


class ResourceError(DomainLMError):
    """The machine cannot do what was asked (memory, devices, launcher missing)."""
