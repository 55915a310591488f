"""Report-IDs are unique across reporter instances (RFC 8460 §4.4): each instance puts its id
into them, random and kept in its state database unless ``reporter.instance_id`` names one; a
dry run uses the id ``send`` would use. The real CLI on the site's servers."""

from __future__ import annotations

import email
import gzip
import json
import re
import socket
from pathlib import Path

from support.site import SUBMITTER, Site

from tlsrpt_reporter.store import instance
from tlsrpt_reporter.store import reports as state

# Left side: the day, the instance id, a hash of the domain.
REPORT_ID = re.compile(r"2026\.03\.01\.(?P<instance>[A-Za-z0-9]+)\.[0-9a-f]{16}@example\.net")


def _report_ids(db: Path) -> dict[str, str]:
    conn = state.connect(db)
    rows = dict(conn.execute("SELECT domain, report_id FROM report").fetchall())
    conn.close()
    return rows


def _second_reporter(site: Site, name: str, extra: str = "") -> Path:
    """The site's configuration with its own state database (another reporter instance)."""
    text = site.config.read_text().replace(str(site.reporter_db), str(site.tmp / f"{name}.db"))
    config = site.tmp / f"{name}.toml"
    config.write_text(text.replace("spread = 0", f"spread = 0\n{extra}"))
    return config


def test_two_reporter_instances_never_send_the_same_report_id(site: Site) -> None:
    assert site.cli("send", "--now").returncode == 0
    other = _second_reporter(site, "other")
    assert site.cli("send", "--now", config=other).returncode == 0
    mine, theirs = _report_ids(site.reporter_db), _report_ids(site.tmp / "other.db")
    assert set(mine) == set(theirs) and mine
    for domain, report_id in mine.items():
        assert report_id != theirs[domain], domain
        match = REPORT_ID.fullmatch(report_id)
        assert match, report_id
        # The instance part is the random id kept in the state database, not the host name.
        assert match["instance"] == instance.stored_instance_id(site.reporter_db)
        assert match["instance"] != socket.gethostname()
    subjects = {
        email.message_from_bytes(m.data)["Subject"]
        for m in site.smtp.messages
        if m.rcpt_tos == ["tlsrpt@mail.example"]
    }
    assert len(subjects) == 2, "each instance's mail carries its own Report-ID"


def test_the_configured_instance_id_overrides_the_stored_one(site: Site) -> None:
    config = _second_reporter(site, "named", 'instance_id = "mx2"')
    assert site.cli("send", "--now", config=config).returncode == 0
    for report_id in _report_ids(site.tmp / "named.db").values():
        assert REPORT_ID.fullmatch(report_id)["instance"] == "mx2"  # type: ignore[index]
    mail = next(m for m in site.smtp.messages if m.rcpt_tos == ["tlsrpt@mail.example"])
    attachment = email.message_from_bytes(mail.data).get_payload()[1]
    assert attachment.get_filename().startswith(f"{SUBMITTER}!mail.example!")
    assert attachment.get_filename().endswith(".json.gz") and "!mx2" in attachment.get_filename()


def _dry_run_id(site: Site, out: Path) -> tuple[str, str]:
    built = site.cli("build", "--day", "2026-03-01", "--out", str(out))
    assert built.returncode == 0, built.stderr
    (path,) = out.glob(f"{SUBMITTER}!mail.example!*.json.gz")
    return json.loads(gzip.decompress(path.read_bytes()))["report-id"], built.stdout


def test_a_dry_run_uses_the_stored_id_and_without_state_a_fresh_one(site: Site) -> None:
    first, said = _dry_run_id(site, site.tmp / "a")
    assert "random, for this dry run only" in said
    again, _ = _dry_run_id(site, site.tmp / "b")
    assert first != again
    assert not site.reporter_db.exists(), "a dry run creates no state"
    assert site.cli("send", "--now").returncode == 0
    stored = _report_ids(site.reporter_db)["mail.example"]
    dry, said = _dry_run_id(site, site.tmp / "c")
    assert dry == stored
    assert f"kept in {site.reporter_db}" in said
