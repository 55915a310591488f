"""A test rig that makes Debian's real Postfix deliver mail to fake MX servers on loopback.

The point is to get the TLS log lines that a real Postfix writes (``smtp_tls_loglevel = 1``) for
good and bad receiving servers, so that the log parser can be tested on the real thing.

``run_postfix`` builds a private Postfix instance entirely under ``workdir``: its own
``config_directory`` (a ``main.cf`` and ``master.cf`` written here), ``queue_directory`` and
``data_directory``, logging through postlogd into ``workdir/log/postfix.log``. The system instance
in ``/etc/postfix`` is never started, stopped or edited: every ``postfix`` command gets
``-c <config_dir>`` and ``sendmail`` gets ``-C <config_dir>``; as root that needs no
``alternate_config_directories`` entry in the (possibly absent) default ``main.cf``.

For each ``Destination`` one fake MX (aiosmtpd on 127.0.0.1, ephemeral port, in a thread) is
started, and ``transport_maps`` routes the domain to ``smtp:[127.0.0.1]:PORT``. As the next hop is
that bracketed address, ``smtp_tls_policy_maps`` is keyed by ``[127.0.0.1]:PORT`` (Postfix looks
the policy up by next-hop destination) and, for ``verify``/``secure``, carries
``match=mx.<domain>``, the name the valid certificate is issued for.

Certificates (the fake MX offers STARTTLS unless the kind is ``no-starttls``):

* ``valid``: issued by the test CA (trustme) for ``mx.<domain>``;
* ``expired``: issued by the same CA for ``mx.<domain>``, valid until yesterday;
* ``self-signed``: a certificate for ``mx.<domain>`` that signs itself;
* ``mismatch``: issued by the test CA, but for ``mx.other.<domain>``.

Each message is submitted with Postfix's own ``sendmail``; the rig returns once the log holds a
``status=`` line for every message (delivered, deferred or bounced, each tried once: the backoff
times are long, so a deferred message is not retried while the rig runs).
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.collector import make_traversable

from rigs.smtpserver import SmtpServer

POSTFIX = Path("/usr/sbin/postfix")
SENDMAIL = Path("/usr/sbin/sendmail")
HOST = "127.0.0.1"
KINDS = ("valid", "expired", "self-signed", "mismatch", "no-starttls")
LEVELS = ("verify", "secure", "may", "encrypt", "dane", "none")
SENDER = "sender@rig.test"
LOG_NAME = "postfix.log"


@dataclass
class Destination:
    """One recipient domain and the fake MX behind it."""

    domain: str
    """The recipient domain, e.g. ``valid.test``; messages go to ``rcpt@<domain>``."""
    kind: str
    """What the MX offers: valid, expired, self-signed, mismatch or no-starttls."""
    level: str
    """The Postfix TLS security level in smtp_tls_policy_maps: verify, secure, may, encrypt..."""
    messages: int = 1
    """How many messages to send to this domain."""

    @property
    def mx_name(self) -> str:
        """The MX host name the policy matches (and a valid certificate is issued for)."""
        return f"mx.{self.domain}"

    @property
    def recipient(self) -> str:
        """The envelope recipient of every message to this domain."""
        return f"rcpt@{self.domain}"


def postfix_available() -> str | None:
    """Return None when the rig can run here, else a one-line reason why not."""
    if not POSTFIX.exists():
        return f"{POSTFIX} not found (apt-get install postfix)"
    if not SENDMAIL.exists():
        return f"{SENDMAIL} not found"
    if os.geteuid() != 0:
        return "the Postfix rig must run as root (postfix start needs it)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no postfix user"
    return None


# --- certificates -----------------------------------------------------------------------------


def _self_signed(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``name``; returns (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _server_context(ca: trustme.CA, dest: Destination, certdir: Path) -> ssl.SSLContext | None:
    """The fake MX's TLS context for the destination's kind (None: no STARTTLS)."""
    if dest.kind == "no-starttls":
        return None
    if dest.kind == "self-signed":
        cert_pem, key_pem = _self_signed(dest.mx_name)
    else:
        if dest.kind == "valid":
            leaf = ca.issue_cert(dest.mx_name)
        elif dest.kind == "expired":
            now = datetime.datetime.now(datetime.UTC)
            leaf = ca.issue_cert(
                dest.mx_name,
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            )
        elif dest.kind == "mismatch":
            leaf = ca.issue_cert(f"mx.other.{dest.domain}")
        else:
            raise ValueError(f"unknown destination kind {dest.kind!r}; expected one of {KINDS}")
        cert_pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        key_pem = leaf.private_key_pem.bytes()
    certfile = certdir / f"{dest.domain}.crt"
    keyfile = certdir / f"{dest.domain}.key"
    certfile.write_bytes(cert_pem)
    keyfile.write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


# --- the fake MX ------------------------------------------------------------------------------


def start_fake_mxs(
    destinations: list[Destination], cert_dir: Path, servers: list[SmtpServer]
) -> Path:
    """Start a fake MX for each destination, appending each to ``servers`` once it runs (the
    caller stops them, also after a failure half-way), with certificates from a new test CA
    written to ``cert_dir`` for the MTA to read; the CA certificate's file."""
    ca = trustme.CA()
    ca_file = cert_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_dir.chmod(0o755)
    for dest in destinations:
        server = fake_mx(dest.mx_name, _server_context(ca, dest, cert_dir))
        servers.append(server.__enter__())
    for path in cert_dir.iterdir():
        path.chmod(0o644)
    return ca_file


def fake_mx(hostname: str, tls_context: ssl.SSLContext | None) -> SmtpServer:
    """The loopback SMTP test server answering as ``hostname``, with STARTTLS when given a
    context (use it as a context manager)."""
    return SmtpServer(tls_context=tls_context, hostname=hostname)


# --- the Postfix instance ---------------------------------------------------------------------

# No chroot column is "y": the instance has no chroot jail to populate. No smtpd listener: mail is
# submitted with sendmail/postdrop into maildrop and picked up by pickup.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
        -o syslog_name=postfix/$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _main_cf(workdir: Path, config_dir: Path, ca_file: Path) -> str:
    log_dir = workdir / "log"
    return f"""\
compatibility_level = 3.6
queue_directory = {workdir / "spool"}
data_directory = {workdir / "data"}
mail_owner = postfix
setgid_group = postdrop
myhostname = rig.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
smtputf8_enable = no
biff = no
append_dot_mydomain = no

# Log through postlogd into a file of our own: no syslog daemon needed.
maillog_file = {log_dir / LOG_NAME}
maillog_file_prefixes = {log_dir}

transport_maps = texthash:{config_dir / "transport"}
smtp_tls_policy_maps = texthash:{config_dir / "tls_policy"}
smtp_tls_security_level = none
smtp_tls_loglevel = 1
smtp_tls_CAfile = {ca_file}
smtp_tls_session_cache_database =

# Fail fast, and try a deferred message only once while the rig runs: the backoff times are
# longer than any run, so a deferred message stays deferred until "postfix stop".
smtp_connect_timeout = 5s
smtp_helo_timeout = 10s
smtp_starttls_timeout = 10s
smtp_mail_timeout = 10s
smtp_rcpt_timeout = 10s
smtp_data_init_timeout = 10s
smtp_data_xfer_timeout = 10s
smtp_data_done_timeout = 10s
smtp_quit_timeout = 5s
queue_run_delay = 3600s
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s
delay_warning_time = 0h
"""


def _postfix(config_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(POSTFIX), "-c", str(config_dir), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=_env(config_dir),
    )
    if check and done.returncode != 0:
        log = config_dir.parent / "log" / LOG_NAME
        raise RuntimeError(
            f"postfix {' '.join(args)} failed with exit code {done.returncode}: "
            f"{done.stdout}{done.stderr}\nlog tail:\n{log_tail(log)}"
        )
    return done


def _env(config_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAIL_")}
    env["MAIL_CONFIG"] = str(config_dir)
    return env


def _submit(config_dir: Path, dest: Destination, number: int) -> None:
    message = (
        f"From: {SENDER}\r\n"
        f"To: {dest.recipient}\r\n"
        f"Subject: rig message {number} to {dest.domain} ({dest.kind}, {dest.level})\r\n"
        "\r\n"
        "This is a test message from the Postfix TLS rig.\r\n"
    )
    subprocess.run(
        [str(SENDMAIL), "-C", str(config_dir), "-f", SENDER, "--", dest.recipient],
        input=message,
        text=True,
        capture_output=True,
        check=True,
        timeout=30,
        env=_env(config_dir),
    )


def _status_counts(log: Path, destinations: list[Destination]) -> dict[str, int]:
    text = log.read_text(errors="replace") if log.exists() else ""
    counts: dict[str, int] = {}
    for dest in destinations:
        needle = f"to=<{dest.recipient}>"
        counts[dest.domain] = sum(
            1 for line in text.splitlines() if needle in line and " status=" in line
        )
    return counts


def check_destinations(destinations: list[Destination], levels: tuple[str, ...] = LEVELS) -> None:
    """ValueError unless every destination is of a known kind and one of ``levels`` (what
    the MTA can be told), each domain once."""
    domains = [dest.domain for dest in destinations]
    if len(set(domains)) != len(domains):
        raise ValueError(f"destination domains must be unique: {domains}")
    for dest in destinations:
        if dest.kind not in KINDS:
            raise ValueError(f"unknown destination kind {dest.kind!r}; expected one of {KINDS}")
        if dest.level not in levels:
            raise ValueError(f"unknown TLS level {dest.level!r}; expected one of {levels}")


def fresh_workdir(workdir: Path, mta: str) -> Path:
    """``workdir`` resolved; ValueError when it holds anything (a queue left from an earlier
    run would be retried and its lines counted again)."""
    workdir = workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise ValueError(f"the {mta} work directory must be new or empty: {workdir}")
    return workdir


def log_tail(log: Path, lines: int = 40) -> str:
    """The end of a log, for an error message."""
    if not log.exists():
        return f"({log} does not exist)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_for_outcomes(
    log: Path,
    destinations: list[Destination],
    timeout: float,
    count: Callable[[Path, list[Destination]], dict[str, int]],
    failure: str,
) -> None:
    """Wait until ``count`` (per domain, the outcomes the MTA logged) reaches the messages sent
    to every destination; after ``timeout`` seconds TimeoutError: ``failure``, then what was
    wanted and found and the tail of the log."""
    want = {dest.domain: dest.messages for dest in destinations}
    deadline = time.monotonic() + timeout
    while True:
        counts = count(log, destinations)
        if all(counts[domain] >= n for domain, n in want.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{failure} for every message within {timeout}s "
                f"(wanted {want}, got {counts}); log tail:\n{log_tail(log)}"
            )
        time.sleep(0.2)


def _wait_for_master_exit(pid_file: Path, timeout: float) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def run_postfix(workdir: Path, destinations: list[Destination], timeout: float = 60) -> Path:
    """Run a private Postfix against fake MX servers; return the path of its log file.

    ``workdir`` must not exist yet or be empty; everything the instance needs goes there (and
    the rig adds o+x to its ancestors: see ``conftest.make_traversable``).

    Every destination gets ``messages`` messages; the function returns once the log has a
    ``status=`` line for each of them, after Postfix is stopped and the fake MX servers are shut
    down. On timeout it raises ``TimeoutError`` with the tail of the log.
    """
    reason = postfix_available()
    if reason is not None:
        raise RuntimeError(f"cannot run Postfix: {reason}")
    check_destinations(destinations)
    workdir = fresh_workdir(workdir, "Postfix")
    config_dir = workdir / "etc"
    cert_dir = workdir / "certs"
    log_dir = workdir / "log"
    for directory in (config_dir, cert_dir, log_dir, workdir / "spool", workdir / "data"):
        directory.mkdir(parents=True, exist_ok=True)
    make_traversable(workdir)
    # The master opens data_directory/master.lock as the postfix user, and postlogd (also the
    # postfix user) must be able to create and write the log file: both belong to postfix.
    # queue_directory stays root-owned (as /var/spool/postfix is); "postfix check" fills it.
    postfix_user = pwd.getpwnam("postfix")
    for directory in (log_dir, workdir / "data"):
        os.chown(directory, postfix_user.pw_uid, postfix_user.pw_gid)
    log = log_dir / LOG_NAME

    servers: list[SmtpServer] = []
    started = False
    try:
        ca_file = start_fake_mxs(destinations, cert_dir, servers)
        transport = "".join(
            f"{dest.domain}\tsmtp:[{HOST}]:{server.port}\n"
            for dest, server in zip(destinations, servers, strict=True)
        )
        policy = ""
        for dest, server in zip(destinations, servers, strict=True):
            match = f" match={dest.mx_name}" if dest.level in ("verify", "secure") else ""
            policy += f"[{HOST}]:{server.port}\t{dest.level}{match}\n"
        (config_dir / "transport").write_text(transport)
        (config_dir / "tls_policy").write_text(policy)
        (config_dir / "main.cf").write_text(_main_cf(workdir, config_dir, ca_file))
        (config_dir / "master.cf").write_text(_MASTER_CF)

        # "postfix check" runs post-install create-missing: it makes the queue directories with
        # the owners and modes Postfix wants (maildrop postfix:postdrop 1730, and so on).
        _postfix(config_dir, "check")
        _postfix(config_dir, "start")
        started = True
        for dest in destinations:
            for number in range(1, dest.messages + 1):
                _submit(config_dir, dest, number)

        wait_for_outcomes(
            log, destinations, timeout, _status_counts, "Postfix did not log a status= line"
        )
    finally:
        if started:
            _postfix(config_dir, "stop", check=False)
            _wait_for_master_exit(workdir / "spool" / "pid" / "master.pid", 20)
        for server in servers:
            server.__exit__(None, None, None)
    return log


def copy_log(log: Path, target: Path) -> None:
    """Copy a rig log somewhere that outlives the work directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log, target)
