"""Debian 13's real Postfix 3.10 + libtlsrpt feeding our collector, end to end.

Run as root inside a network namespace of its own (``unshare --net``), where loopback holds all
of 127/8, port 53 and 25 are free and ``net.unix.max_dgram_qlen`` can be raised to 512: at the
bare kernel's 10, libtlsrpt (which sends with MSG_DONTWAIT and never retries) would drop
datagrams and exact counts would flake::

    unshare --net -- python -m rigs.postfix310 OUTDIR      (from tests/, as root)

What runs, all on loopback inside the namespace:

* a DNS server on 127.0.0.1:53 that sets the AD bit (Postfix applies DANE only to TLSA records
  that arrived DNSSEC-validated), serving MX, A, TLSA and ``_smtp._tls`` TXT records;
* one fake MX per recipient domain on 127.0.0.11 and up, port 25 (aiosmtpd, trustme
  certificates), each set up for one row of Postfix's behaviour (``CASES``);
* our collector (the real ``tlsrpt-collectd`` process), its socket inside the Postfix queue
  directory at ``run/tlsrpt/tlsrpt.sock``, mode 0660, group = the numeric gid of ``postfix`` in
  the root's ``/etc/group``, writers restricted to the root's ``postfix`` uid;
* Postfix 3.10 chrooted into the trixie root (``rigs.trixie``), a private instance under
  ``/rig-<pid>`` in that root, with Debian's default master.cf (``smtp`` chrooted into the queue
  directory), ``smtp_tls_security_level = dane``, ``smtp_dns_support_level = dnssec``, no
  connection cache, logging to a ``maillog_file``. Mail goes in with the root's ``sendmail``;
  the queue is never flushed (a retry of a deferred message would send a second datagram).

Then the reporter builds the day's reports and delivers them: mail through that same Postfix
(its smtpd on 127.0.0.1:25) to the ``rua`` domain ``reports.test``, which publishes
``_smtp._tls`` itself, and one report by HTTPS POST. Everything observed is written to
``OUTDIR/result.json`` (plus the raw mails and built files) for the tests to check.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support.paths import DATA
from support.site import dkim_key, loopback_delivery

from rigs import trixie
from rigs.dnsserver import DnsServer
from rigs.httpsserver import HttpsTestServer
from rigs.smtpserver import SmtpServer
from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import reports as state

SUBMITTER = "rig-sender.test"
RUA_DOMAIN = "reports.test"
RUA_MAIL = f"tlsrpt@{RUA_DOMAIN}"
HTTPS_NAME = "reports-https.test"
HTTPS_IP = "127.0.0.31"
RUA_MX_IP = "127.0.0.30"
SENDER = "sender@rig.test"
QLEN = 512
_POSTFIX_TIMEOUT = 120.0
_COLLECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Case:
    """One recipient domain and what its MX and DNS are set up to provoke."""

    domain: str
    ip: str
    tlsa: str  # "match", "mismatch", "unusable", "type255" or "" (no TLSA)
    starttls: bool = True
    record: bool = True  # publishes _smtp._tls
    tls_required_no: bool = False  # the message carries "TLS-Required: No"
    rua: str = f"mailto:{RUA_MAIL}"

    @property
    def mx(self) -> str:
        """The MX host name, also the TLSA base domain (RFC 8460 §1.1: the DANE policy domain)."""
        return f"mx.{self.domain}"


# The rows of what Postfix 3.10.13 emits, one domain each (see tests/test_postfix310_e2e.py).
CASES = (
    Case("a-dane-ok.test", "127.0.0.11", "match"),
    Case("b-dane-mismatch.test", "127.0.0.12", "mismatch"),
    Case("c-dane-unusable.test", "127.0.0.13", "unusable"),
    Case("c2-dane-dropped.test", "127.0.0.15", "type255"),
    Case("d-dane-nostarttls.test", "127.0.0.14", "match", starttls=False),
    Case("e-notlsa.test", "127.0.0.16", "", rua="https"),
    Case("f-norecord.test", "127.0.0.17", "match", record=False),
    Case("g-tls-required-no.test", "127.0.0.18", "match", tls_required_no=True),
    Case("h-notlsa-nostarttls.test", "127.0.0.19", "", starttls=False),
    # The rua domain itself gets one ordinary message: the control that shows it does emit a
    # datagram, so that the report mails' silence is the TLS-Required header's doing.
    Case(RUA_DOMAIN, RUA_MX_IP, "match"),
)
# The MX host of this case publishes its own record and gets a host report (RFC 8460 §1.1).
HOST_REPORT_MX = "mx.a-dane-ok.test"


def setup_namespace() -> dict[str, str]:
    """Bring loopback up and raise the datagram queue; refuse to run outside a new namespace."""
    if os.geteuid() != 0:
        raise SystemExit("postfix310: must run as root (chroot, port 25, sysctl)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    qlen = Path("/proc/sys/net/unix/max_dgram_qlen")
    qlen.write_text(f"{QLEN}\n")
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Port 53 on 127.0.0.1 is taken in the host's namespace on most machines: a free one
        # says this is a namespace of our own, which the fixed ports below depend on.
        probe.bind(("127.0.0.1", 53))
    finally:
        probe.close()
    return {"max_dgram_qlen": qlen.read_text().strip()}


# --- certificates and DNS ----------------------------------------------------------------


def _spki_sha256(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest().upper()


def _tlsa_records(case: Case, cert_pem: bytes) -> list[tuple[str, str]]:
    digest = _spki_sha256(cert_pem)
    if case.tlsa == "match":
        return [("TLSA", f"3 1 1 {digest}")]
    if case.tlsa == "mismatch":
        return [("TLSA", f"3 1 1 {hashlib.sha256(b'another key').hexdigest().upper()}")]
    if case.tlsa == "unusable":
        # A 16-byte "SHA-256" digest and a 32-byte "SHA-512" one: OpenSSL can use neither.
        return [_raw_tlsa(3, 1, 1, digest[:32]), _raw_tlsa(3, 2, 1, digest)]
    if case.tlsa == "type255":
        return [("TLSA", f"3 1 255 {digest}")]  # matching type 255: Postfix discards it
    return []


def _raw_tlsa(usage: int, selector: int, matching: int, hex_data: str) -> tuple[str, str]:
    # In RFC 3597 generic form: a digest of the wrong length is what makes these unusable,
    # and a zone-file parser would refuse it.
    data = bytes([usage, selector, matching]) + bytes.fromhex(hex_data)
    return ("TLSA", f"\\# {len(data)} {data.hex()}")


def build_zone(
    certs: dict[str, bytes], dkim_record: str, https_port: int
) -> dict[str, list[tuple[str, str]]]:
    """Every name the rig's Postfix and reporter look up."""
    zone: dict[str, list[tuple[str, str]]] = {}
    for case in CASES:
        zone[case.domain] = [("MX", f"10 {case.mx}.")]
        zone[case.mx] = [("A", case.ip)]
        tlsa = _tlsa_records(case, certs[case.domain])
        if tlsa:
            zone[f"_25._tcp.{case.mx}"] = tlsa
        if case.record:
            rua = case.rua
            if rua == "https":
                rua = f"https://{HTTPS_NAME}:{https_port}/v1/tlsrpt"
            zone[f"_smtp._tls.{case.domain}"] = [("TXT", f'"v=TLSRPTv1; rua={rua}"')]
    zone[f"_smtp._tls.{HOST_REPORT_MX}"] = [("TXT", f'"v=TLSRPTv1; rua=mailto:{RUA_MAIL}"')]
    zone[HTTPS_NAME] = [("A", HTTPS_IP)]
    zone[f"tlsrpt._domainkey.{SUBMITTER}"] = [("TXT", _txt(dkim_record))]
    return zone


def _txt(text: str) -> str:
    # TXT character-strings hold at most 255 bytes each (RFC 1035 §3.3.14).
    return " ".join(f'"{text[i : i + 250]}"' for i in range(0, len(text), 250))


# --- Postfix in the root ------------------------------------------------------------------


class Postfix:
    """A private Postfix 3.10 instance under ``/rig-<pid>`` inside the trixie root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inside = Path(f"/rig-{os.getpid()}")
        self.base = root / self.inside.relative_to("/")
        self.etc = self.base / "etc"
        self.spool = self.base / "spool"
        self.log = self.base / "log" / "postfix.log"
        self.started = False
        passwd = {
            line.split(":")[0]: line.split(":")
            for line in (root / "etc/passwd").read_text().splitlines()
        }
        groups = {
            line.split(":")[0]: line.split(":")
            for line in (root / "etc/group").read_text().splitlines()
        }
        self.uid = int(passwd["postfix"][2])
        self.gid = int(groups["postfix"][2])

    @property
    def socket_path(self) -> Path:
        """The collector's socket as seen from the host: inside the queue directory."""
        return self.spool / "run" / "tlsrpt" / "tlsrpt.sock"

    def prepare(self) -> None:
        """Write the configuration and the files chrooted services need; run postfix check."""
        if self.base.exists():
            shutil.rmtree(self.base)
        for sub in ("etc", "spool", "data", "log"):
            (self.base / sub).mkdir(parents=True)
        # The master takes data_directory/master.lock and postlogd writes the log as postfix.
        for sub in ("data", "log"):
            os.chown(self.base / sub, self.uid, self.gid)
        resolv = "nameserver 127.0.0.1\noptions trust-ad\n"
        (self.root / "etc/resolv.conf").write_text(resolv)
        (self.root / "etc/hosts").write_text("127.0.0.1 localhost\n")
        inside = self.inside
        (self.etc / "main.cf").write_text(
            f"""\
compatibility_level = 3.10
queue_directory = {inside}/spool
data_directory = {inside}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = rig.postfix310.test
mydomain = postfix310.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtputf8_enable = no
biff = no
maillog_file = {inside}/log/postfix.log
maillog_file_prefixes = {inside}/log

smtp_dns_support_level = dnssec
smtp_tls_security_level = dane
smtp_tls_loglevel = 1
smtp_tls_session_cache_database =
smtp_connection_cache_on_demand = no
smtp_tlsrpt_enable = yes
smtp_tlsrpt_socket_name = run/tlsrpt/tlsrpt.sock

smtp_connect_timeout = 5s
smtp_helo_timeout = 10s
smtp_starttls_timeout = 10s
queue_run_delay = 3600s
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s
delay_warning_time = 0h
"""
        )
        # Debian's own master.cf: smtp(8) runs chrooted into the queue directory.
        shutil.copyfile(self.root / "etc/postfix/master.cf", self.etc / "master.cf")
        self.run("check")
        # What Debian's init script copies into the chroot so that chrooted smtp can resolve.
        (self.spool / "etc").mkdir(exist_ok=True)
        for name in ("resolv.conf", "hosts", "services", "nsswitch.conf", "host.conf"):
            source = self.root / "etc" / name
            if source.exists():
                shutil.copyfile(source, self.spool / "etc" / name)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str) -> str:
        """``postfix -c CONFIG ARGS`` inside the root; RuntimeError with the log on failure."""
        done = subprocess.run(
            ["chroot", str(self.root), "/usr/sbin/postfix", "-c", str(self.inside / "etc"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"postfix {' '.join(args)} failed ({done.returncode}): {done.stdout}"
                f"{done.stderr}\n{self.log_text()[-3000:]}"
            )
        return done.stdout + done.stderr

    def start(self) -> None:
        """Start the master."""
        self.run("start")
        self.started = True

    def stop(self) -> None:
        """Stop the master and wait until it is gone."""
        if not self.started:
            return
        subprocess.run(
            ["chroot", str(self.root), "/usr/sbin/postfix", "-c", str(self.inside / "etc"),
             "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        pid_file = self.spool / "pid" / "master.pid"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(int(pid_file.read_text().split()[0]), 0)
            except (OSError, ValueError, IndexError):
                break
            time.sleep(0.1)
        self.started = False

    def submit(self, recipient: str, subject: str, extra_headers: str = "") -> None:
        """Hand one message to the root's sendmail."""
        message = (
            f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: {subject}\r\n{extra_headers}\r\n"
            "A message from the Postfix 3.10 rig.\r\n"
        )
        subprocess.run(
            ["chroot", str(self.root), "/usr/sbin/sendmail", "-C", str(self.inside / "etc"),
             "-f", SENDER, "--", recipient],
            input=message, text=True, capture_output=True, check=True, timeout=30,
        )  # fmt: skip

    def log_text(self) -> str:
        """Everything Postfix logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def statuses(self, recipient: str) -> list[str]:
        """The ``status=`` words logged for ``recipient`` (sent, deferred, bounced)."""
        found = []
        for line in self.log_text().splitlines():
            if f"to=<{recipient}>" in line and " status=" in line:
                found.append(line.split(" status=")[1].split()[0])
        return found

    def wait_for(self, recipient: str, count: int, timeout: float = _POSTFIX_TIMEOUT) -> None:
        """Wait until ``count`` status lines were logged for ``recipient``."""
        deadline = time.monotonic() + timeout
        while len(self.statuses(recipient)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Postfix logged {self.statuses(recipient)} for {recipient} within "
                    f"{timeout:.0f} s, wanted {count}:\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.1)

    def remove(self) -> None:
        """Delete the instance's files from the root (the root itself stays cached)."""
        shutil.rmtree(self.base, ignore_errors=True)


# --- the collector ------------------------------------------------------------------------


class CollectorProcess:
    """The real tlsrpt-collectd, started as a subprocess with a config file."""

    def __init__(self, out: Path, postfix: Postfix) -> None:
        self.db = out / "collectd.sqlite"
        self.logfile = out / "collectd.log"
        self.config = out / "collectd.toml"
        self.config.write_text(
            f"""\
[collectd]
socket = "{postfix.socket_path}"
socket_mode = "0660"
socket_group = "{postfix.gid}"
allowed_users = [{postfix.uid}]
db = "{self.db}"
flush_interval = 0.2
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it receives."""
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tlsrpt_collectd.daemon", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait(lambda: "ready: receiving" in self.log(), "the collector to start")

    def log(self) -> str:
        """What it logged."""
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def counters(self, day: str) -> dict[str, int]:
        """The stored per-day counters."""
        if not self.db.exists():
            return {}
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return store.day_counters(conn, day)
        except sqlite3.OperationalError:
            return {}
        finally:
            conn.close()

    def wait_counter(self, day: str, name: str, value: int) -> None:
        """Wait until the stored counter ``name`` reaches ``value``."""
        self._wait(lambda: self.counters(day).get(name, 0) >= value, f"{name} >= {value}")

    def _wait(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + _COLLECT_TIMEOUT
        while not check():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the collector exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited in vain for {what}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM (a full flush) and the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def send_as_nobody(sock: Path, data: bytes, gid: int) -> None:
    """Send one datagram as ``nobody``, with the socket's group as a supplementary group so
    that the file permissions let it in and only the collector's sender check stands."""
    code = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);"
        "s.sendto(sys.stdin.buffer.read(), sys.argv[1])"
    )
    subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", f"--groups={gid}",
         sys.executable, "-c", code, str(sock)],
        input=data, check=True, timeout=30,
    )  # fmt: skip


# --- the reporter -------------------------------------------------------------------------


def write_reporter_config(
    out: Path, collector_db: Path, key: Path, record: str, ca_file: Path
) -> Path:
    """A reporter config: relay = the rig's Postfix, DNS = the rig's server."""
    config = out / "reporter.toml"
    config.write_text(
        f"""\
[collectd]
db = "{collector_db}"
[reporter]
organization_name = "Rig Sender"
contact_info = "tlsrpt@{SUBMITTER}"
db = "{out / "reporter.sqlite"}"
grace = 0
spread = 0
mx_host_reports = true
"""
        + loopback_delivery(
            submitter=SUBMITTER,
            relay_port=25,
            key=key,
            record=record,
            ca_file=ca_file,
            https_timeout=10,
            dns_port=53,
            dns_timeout=2,
        )
    )
    return config


def build_dry_run(config: Path, day: str, out: Path) -> subprocess.CompletedProcess[str]:
    """``tlsrpt-reporter build`` into ``out`` (signed .eml and .json.gz per report); --force:
    the collector stamped today's date, a day that has not finished."""
    return subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "build", "--config", str(config),
         "--day", day, "--out", str(out), "--force"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def deliver(config: Path, day: str) -> dict[str, Any]:
    """Build ``day`` and deliver every report as ``send --now`` would, once the day is over.

    The collector stamped today's date on the sessions; the day is built as if its end had
    passed (the same entry points ``send`` uses). The sender keeps the real clock: a mail's
    Date and DKIM ``t=`` are when it is handed over, and a verifier refuses a ``t=`` from
    tomorrow.
    """
    cfg_all = load_config(config)
    cfg = cfg_all.reporter
    sender = commands._sender(cfg, cfg_all.dns)
    now = timing.day_end(day) + 60
    conn = state.connect(cfg.db)
    try:
        schedule.build_due(cfg, conn, now, random.Random(8460))
        asyncio.run(commands._self_check(sender, cfg))
        summary = asyncio.run(sender.send_due(conn, force=True))
        rows = conn.execute(
            "SELECT report.domain, delivery.destination, delivery.state FROM delivery"
            " JOIN report ON report.id = delivery.report"
        ).fetchall()
    finally:
        conn.close()
    return {
        "sent": summary.sent,
        "attempted": summary.attempted,
        "problems": summary.problems,
        "deliveries": [list(row) for row in rows],
    }


# --- the scenario -------------------------------------------------------------------------


def _mx_context(ca: trustme.CA, case: Case, certdir: Path) -> tuple[ssl.SSLContext, bytes]:
    leaf = ca.issue_cert(case.mx)
    cert_pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    certfile, keyfile = certdir / f"{case.domain}.crt", certdir / f"{case.domain}.key"
    certfile.write_bytes(cert_pem)
    keyfile.write_bytes(leaf.private_key_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certfile), str(keyfile))
    return context, leaf.cert_chain_pems[0].bytes()


def run(out: Path) -> dict[str, Any]:
    """The whole scenario; returns what the tests check (also written to result.json)."""
    started = time.monotonic()
    result: dict[str, Any] = {"namespace": setup_namespace()}
    root = trixie.ensure_root()
    result["versions"] = trixie.versions(root)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    result["day"] = day
    certdir = out / "certs"
    certdir.mkdir()
    ca = trustme.CA()
    contexts: dict[str, ssl.SSLContext] = {}
    certs: dict[str, bytes] = {}
    for case in CASES:
        contexts[case.domain], certs[case.domain] = _mx_context(ca, case, certdir)
    key, record = dkim_key(out, SUBMITTER)
    result["dkim_record"] = record
    postfix = Postfix(root)
    collector = CollectorProcess(out, postfix)
    with HttpsTestServer(out, names=(HTTPS_NAME,), host=HTTPS_IP) as web:
        zone = build_zone(certs, record, web.port)
        servers = [
            SmtpServer(
                hostname=case.mx,
                host=case.ip,
                port=25,
                tls_context=contexts[case.domain] if case.starttls else None,
            )
            for case in CASES
        ]
        with DnsServer(zone, port=53, authenticated=True):
            for server in servers:
                server.__enter__()
            try:
                postfix.prepare()
                collector.start()
                postfix.start()
                result["seconds_to_start"] = round(time.monotonic() - started, 1)
                result.update(_sessions(postfix, collector, day, out))
                result.update(_reports(postfix, collector, day, out, key, record, web, servers))
            finally:
                postfix.stop()
                if collector.proc is not None and collector.proc.poll() is None:
                    result["collector_exit"] = collector.stop()
                for server in servers:
                    server.__exit__(None, None, None)
                (out / "postfix.log").write_text(postfix.log_text())
                postfix.remove()
    result["counters_final"] = collector.counters(day)
    result["seconds_total"] = round(time.monotonic() - started, 1)
    return result


def _sessions(postfix: Postfix, collector: CollectorProcess, day: str, out: Path) -> dict[str, Any]:
    """One message per case; wait for Postfix's verdicts and the collector's datagrams."""
    for number, case in enumerate(CASES, 1):
        headers = "TLS-Required: No\r\n" if case.tls_required_no else ""
        postfix.submit(f"rcpt@{case.domain}", f"rig case {number}: {case.domain}", headers)
    for case in CASES:
        postfix.wait_for(f"rcpt@{case.domain}", 1)
    statuses = {case.domain: postfix.statuses(f"rcpt@{case.domain}") for case in CASES}
    emitting = 7  # the cases of the table that send a datagram, the rua domain's included
    collector.wait_counter(day, "accepted", emitting)
    # A writer the file permissions let in but the collector's allowed_users does not.
    sample = (DATA / "libtlsrpt-0.5.0rc1.jsonl").read_bytes()
    send_as_nobody(postfix.socket_path, sample.splitlines()[0], postfix.gid)
    collector.wait_counter(day, "rejected:sender-not-allowed", 1)
    time.sleep(1.0)  # two more flush intervals: a late datagram would show in the counts
    export = subprocess.run(
        [sys.executable, "-m", "tlsrpt_reporter.cli", "export", "--db", str(collector.db),
         "--day", day],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    sock = postfix.socket_path.stat()
    return {
        "statuses": statuses,
        "counters_after_sessions": collector.counters(day),
        "export": [json.loads(line) for line in export.stdout.splitlines()],
        "socket": {"mode": oct(sock.st_mode & 0o7777), "gid": sock.st_gid},
        "postfix_ids": {"uid": postfix.uid, "gid": postfix.gid},
    }


def _reports(
    postfix: Postfix,
    collector: CollectorProcess,
    day: str,
    out: Path,
    key: Path,
    record: str,
    web: HttpsTestServer,
    servers: list[SmtpServer],
) -> dict[str, Any]:
    """Build (dry run and for real), deliver through Postfix and HTTPS, and watch the socket."""
    config = write_reporter_config(out, collector.db, key, record, web.ca_file)
    built = build_dry_run(config, day, out / "built")
    if built.returncode != 0:
        raise RuntimeError(f"build failed: {built.stdout}{built.stderr}")
    before = collector.counters(day)
    delivery = deliver(config, day)
    mails = [d for d in delivery["deliveries"] if d[1].startswith("mailto:")]
    postfix.wait_for(RUA_MAIL, len(mails))
    time.sleep(1.0)  # a datagram for a report mail would reach the collector meanwhile
    rua_mx = next(s for s, c in zip(servers, CASES, strict=True) if c.domain == RUA_DOMAIN)
    maildir = out / "received"
    maildir.mkdir()
    for number, message in enumerate(rua_mx.messages):
        (maildir / f"{number:03}.eml").write_bytes(message.data)
    posts = []
    for number, request in enumerate(web.requests):
        path = out / f"post-{number}.json.gz"
        path.write_bytes(request.body)
        posts.append({"path": str(path), "content_type": request.headers.get("content-type")})
    return {
        "built_stdout": built.stdout,
        "delivery": delivery,
        "counters_before_reports": before,
        "counters_after_reports": collector.counters(day),
        "report_mail_statuses": postfix.statuses(RUA_MAIL),
        "posts": posts,
        "received_dir": str(maildir),
        "built_dir": str(out / "built"),
    }


def main(argv: list[str]) -> int:
    """``python -m rigs.postfix310 OUTDIR`` inside ``unshare --net``."""
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = run(out)
    except Exception as exc:  # the test prints this with the logs
        (out / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
        raise
    (out / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    print(json.dumps({"versions": result["versions"], "seconds": result["seconds_total"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
