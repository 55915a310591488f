"""What the first-week keys may be: ``reporter.redirect`` and ``reporter.mail.sign_by``.

The checks ``config.load`` applies to them, in the manner of :mod:`.values` (key name and raw
TOML value in, typed value or a ConfigError naming the key out).
"""

from __future__ import annotations

from tlsrpt_reporter.config.schema import SIGNERS
from tlsrpt_reporter.config.values import address, string
from tlsrpt_reporter.errors import ConfigError


def redirect(name: str, value: object) -> str:
    """``mailto:ADDRESS`` or ``dir:/ABSOLUTE/PATH`` (every report goes there instead of its rua),
    or "" for off."""
    text = string(name, value)
    to = text.removeprefix("mailto:")
    # One plain address: a mailto: URI's "?" headers or "," lists have no place here.
    if text.startswith("mailto:") and to and "," not in to and "?" not in to:
        address(name, to)
        return text
    if text.startswith("dir:/"):
        return text
    if text:
        raise ConfigError(
            f'{name} must be "mailto:ADDRESS" or "dir:/ABSOLUTE/PATH" (or "" for off), e.g. '
            f'"mailto:postmaster@example.net", got {text!r}'
        )
    return text


def sign_by(name: str, value: object) -> str:
    """Who DKIM-signs the report mail: one of :data:`SIGNERS`."""
    if not isinstance(value, str) or value not in SIGNERS:
        raise ConfigError(f"{name} must be one of {', '.join(SIGNERS)}, got {value!r}")
    return value
