"""One exception type for bad user input, so scripts can print a clean message instead of a traceback."""


class QuantscanError(Exception):
    """Bad input or configuration. The message names the file, record and field at fault."""


class ConfigError(QuantscanError):
    """The workflow configuration is invalid."""


class InputFormatError(QuantscanError):
    """An input or intermediate file is malformed or corrupted."""
