"""``reporter.redirect``: every report to the operator instead of its published rua.

For the first week of a new setup: ``"mailto:ADDRESS"`` delivers each report, signed as usual,
to that address with the destinations it would have gone to named in front of the Subject
(``deliver.mail.redirected_subject``); ``"dir:/PATH"`` writes its ``.json.gz`` and ``.eml``
into that directory and counts as delivered. The report's real destinations are stored as
``skipped`` deliveries whose detail says where it went instead (:data:`NOTE`), so ``status``
shows the redirect and the mail can name them; the redirect target is one more delivery,
tried, retried and recorded like any other. Nothing here decides when: that is the sender's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tlsrpt_reporter import safefile
from tlsrpt_reporter.deliver.plan import Destination
from tlsrpt_reporter.errors import DeliveryError, os_fix
from tlsrpt_reporter.store.redirected import skipped_with_note
from tlsrpt_reporter.store.state_db import StateDb

KEY = "reporter.redirect"
#: How the detail of a redirected destination starts.
NOTE = "redirected to "
# Report files are 0640: failure details name hosts and addresses of the operator's peers.
_MODE = 0o640


def apply(destinations: Sequence[Destination], redirect: str) -> list[Destination]:
    """``destinations`` with every pending one ``skipped`` for ``redirect``, and ``redirect``
    itself pending in their place; unchanged when none is pending (nothing would be sent)."""
    pending = [d for d in destinations if d.state == "pending"]
    if not pending:
        return list(destinations)
    note = f"{NOTE}{redirect} ({KEY})"
    kept = [
        Destination(d.target, "skipped", note) if d.state == "pending" else d
        for d in destinations
        # The operator's own rua: the redirect's delivery is that very row.
        if d.target != redirect
    ]
    return [*kept, Destination(redirect, "pending")]


def redirected_from(conn: StateDb, report_id: int) -> list[str]:
    """Where report ``report_id`` would have gone without the redirect ([] when it was not
    redirected)."""
    return skipped_with_note(conn, report_id, NOTE)


def mail_recipient(origins: Sequence[str], fallback: str) -> str:
    """The To of a report mail written to a directory: the first mailto rua it would have
    gone to, else ``fallback`` (the From address: an https-only record has no mail address)."""
    for uri in origins:
        if uri.startswith("mailto:"):
            return uri.removeprefix("mailto:")
    return fallback


def write_files(destination: str, filename: str, report: bytes, eml: bytes) -> str:
    """Write ``report`` as ``filename`` and ``eml`` beside it into the directory of a
    ``dir:`` ``destination``; the detail recorded for the delivery.

    Each file is replaced whole (``safefile.replace``: a retry after a crash writes the same
    bytes again, a symbolic link planted at a file's name is replaced, not followed); the
    directory is created when missing. DeliveryError, retried, when it cannot be written.
    """
    directory = Path(destination.removeprefix("dir:"))
    if "/" in filename or filename.startswith("."):  # built by us; checked all the same
        raise DeliveryError(f"{KEY}: report file name {filename!r} is not a plain file name",
                            permanent=True)  # fmt: skip
    mail_name = filename.removesuffix(".json.gz") + ".eml"
    target = directory
    try:
        safefile.make_directory(directory)
        for name, data in ((filename, report), (mail_name, eml)):
            target = directory / name
            safefile.replace(target, data, _MODE)
    except OSError as exc:
        raise DeliveryError(
            f"{KEY} {destination}: cannot write {target}: {os_fix(exc, target)}"
        ) from None
    return f"written to {directory}: {filename} and {mail_name}"
