"""A stored report as the mail that carries it (RFC 8460 §5.3): composed from the stored row
with the row's Date and Message-ID, then DKIM-signed with the reporter's keys.

The same row always gives the same bytes (the signatures' ``t=`` is the stored Date), so a retry
is byte-identical to the first attempt (RFC 8460 §5.5). No I/O: sending is ``deliver.smtp``'s.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Sequence

from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.deliver import dkim, mail
from tlsrpt_reporter.store.reports import ReportRow


def signed(
    cfg: ReporterConfig,
    keys: Sequence[dkim.LoadedKey],
    row: ReportRow,
    address: str,
    origins: Sequence[str] = (),
) -> bytes:
    """The signed report mail of ``row`` for ``address``; unsigned with
    ``reporter.mail.sign_by = "relay"``: the relay's DKIM signer signs."""
    message = unsigned(cfg, row, address, origins)
    if cfg.mail.sign_by == "relay":
        return message
    stamp = int(mail_date(row.date).timestamp())
    return dkim.sign(message, keys, timestamp=stamp)


def unsigned(
    cfg: ReporterConfig, row: ReportRow, address: str, origins: Sequence[str] = ()
) -> bytes:
    """The report mail of ``row`` for ``address``, before DKIM signing; ``origins`` (a
    redirected report's destinations) are named in its Subject."""
    return mail.compose(
        report_domain=row.domain,
        submitter=cfg.contact_info.rpartition("@")[2].lower(),
        report_id=row.report_id,
        from_addr=cfg.mail.from_addr,
        to_addrs=[address],
        gzip_body=row.gzip,
        filename=row.filename,
        summary_text=row.summary,
        date=mail_date(row.date),
        message_id=row.message_id,
        redirected_from=origins,
    )


def mail_date(date: str) -> dt.datetime:
    """A stored RFC 5322 date (now when there is none to read)."""
    try:
        return email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return dt.datetime.now(dt.UTC)
