"""The reporting half of ``tlsrpt-reporter demo``: build the collected day's reports, sign them,
deliver them to local sinks, and check what arrived.

Nothing leaves the machine: mail goes to an SMTP sink used as the relay, and every HTTPS
destination of the sample is pointed at an HTTPS sink on loopback (the demo's only liberty
with real behaviour, said in its output). The day is built although it has not ended yet.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from urllib.parse import urlsplit

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tlsrpt_reporter.config.schema import DkimConfig, HttpsSettings, MailConfig, ReporterConfig
from tlsrpt_reporter.deliver import dkim
from tlsrpt_reporter.deliver.record import RecordError, parse_record
from tlsrpt_reporter.deliver.resolver import Resolver
from tlsrpt_reporter.deliver.sender import Sender
from tlsrpt_reporter.demo.sinks import HttpsSink, SmtpSink
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.store import reports as state

SUBMITTER = "demo.example"
_LOOPBACK = ipaddress.ip_address("127.0.0.1")


class _LocalResolver(Resolver):
    """Every host name is the local HTTPS sink."""

    async def addresses(self, host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """127.0.0.1 for any name."""
        return [_LOOPBACK]


def _https_hosts(records: list[str]) -> list[str]:
    hosts: set[str] = set()
    for record in records:
        try:
            parsed = parse_record(record)
        except RecordError:
            continue
        hosts.update(u.host for u in parsed.uris if u.scheme == "https")
    return sorted(hosts)


def _to_sink(record: str, port: int) -> str:
    """The record with each https rua moved to the sink's port."""
    try:
        parsed = parse_record(record)
    except RecordError:
        return record
    for uri in parsed.uris:
        if uri.scheme == "https":
            host = urlsplit(uri.value).hostname
            record = record.replace(uri.value, f"https://{host}:{port}{urlsplit(uri.value).path}")
    return record


def _new_key(workdir: Path) -> tuple[dkim.DkimKey, str]:
    pem = workdir / "dkim-tlsrpt.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    conf = dkim.DkimKey(SUBMITTER, "tlsrpt", pem)
    return conf, dkim.record_for(dkim.load_key(conf))


async def run(workdir: Path, collector_db: Path, days: list[str]) -> int:
    """Build, sign and deliver the reports of ``days``; 0 when every report arrived."""
    key, record = _new_key(workdir)
    data = {day: sources.read_day((str(collector_db),), day) for day in days}
    records = [r for d in data.values() for (_, r) in d.records]
    with (
        SmtpSink(workdir / "mail") as smtp,
        HttpsSink(workdir / "https", _https_hosts(records)) as web,
    ):
        cfg = ReporterConfig(
            organization_name="Demo Mail Ltd",
            contact_info=f"tlsrpt@{SUBMITTER}",
            sources=(str(collector_db),),
            db=str(workdir / "reporter.sqlite"),
            # MX-host reports would look up _smtp._tls.<mx host> in real DNS at send time; the
            # demo delivers only to the records its sample carries, and needs no network.
            mx_host_reports=False,
            mail=MailConfig(
                from_addr=f"tlsrpt-noreply@{SUBMITTER}",
                relay=f"127.0.0.1:{smtp.port}",
                dkim=(DkimConfig(SUBMITTER, "tlsrpt", str(key.key_path), record),),
            ),
        )
        conn = state.connect(cfg.db)
        now = time.time()
        built = 0
        for day, day_data in data.items():
            own = schedule.instance_for(cfg, conn)
            rows, _ = schedule.build_reports(cfg, day, day_data, now, instance=own)
            for row in rows:
                row["send_at"] = now
                row["record"] = _to_sink(row["record"], web.port)
            state.insert_day(conn, day, now, rows)
            built += len(rows)
        print(f"5. built {built} reports (schema-validated), each to be DKIM-signed for mail")
        settings = HttpsSettings(
            timeout=10.0,
            allow_private=(ipaddress.ip_network("127.0.0.0/8"),),
            ca_file=str(web.ca_file),
        )
        sender = Sender(cfg, _LocalResolver(), settings, [dkim.load_key(key)])
        summary = await sender.send_due(conn, force=True)
        conn.close()
        mails, posts = list(smtp.received), list(web.received)
    print(
        f"6. delivered: {len(mails)} by mail to the SMTP sink (the relay), {len(posts)} by "
        f"HTTPS POST to the HTTPS sink (every https rua pointed at 127.0.0.1:{web.port}); "
        f"{summary.retrying} retrying, {summary.given_up} given up"
    )
    verified = sum(1 for m in mails if _verify(m.read_bytes(), record))
    print(f"7. DKIM: {verified} of {len(mails)} mails verify in dkimpy's strict tlsrpt mode")
    print(f"   mails (.eml):         {workdir / 'mail'}")
    print(f"   HTTPS bodies (.json.gz): {workdir / 'https'}")
    print(f"   state database:       {cfg.db}")
    return 0 if summary.sent == built and verified == len(mails) else 1


def _verify(message: bytes, record: str) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return record.encode()

    return bool(dkimpy.verify(message, dnsfunc=dnsfunc, tlsrpt="strict"))
