"""``tlsrpt_reporter.demo.sinks`` directly: the demo's SMTP sink takes mail from a real aiosmtplib
client and its HTTPS sink takes POSTs from a real httpx client that trusts only the sink's own
CA; each stores what arrived, byte for byte, and lists the files in ``received``."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from tlsrpt_reporter.demo.sinks import HttpsSink, SmtpSink

MESSAGE = (
    b"From: tlsrpt-noreply@example.net\r\n"
    b"To: tls-reports@example.com\r\n"
    b"Subject: Report Domain: example.com\r\n"
    b"\r\n"
    b"first line\r\n"
    b".a line starting with a dot survives dot-stuffing\r\n"
    b"last line\r\n"
)


def send_mail(port: int, message: bytes, rcpts: list[str]) -> tuple[str, int]:
    async def go() -> tuple[str, int]:
        errors, reply = await aiosmtplib.send(
            message,
            sender="tlsrpt-bounces@example.net",
            recipients=rcpts,
            hostname="127.0.0.1",
            port=port,
            timeout=10,
        )
        return reply, len(errors)

    return asyncio.run(go())


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_smtp_sink_stores_each_message_a_real_client_sends(tmp_path: Path) -> None:
    directory = tmp_path / "mail"
    second = MESSAGE.replace(b"first line", b"the second message")
    with SmtpSink(directory) as sink:
        reply, failed = send_mail(sink.port, MESSAGE, ["tls-reports@example.com"])
        assert failed == 0
        assert "stored by the demo sink" in reply
        send_mail(sink.port, second, ["a@example.com", "b@example.com"])
        assert sink.received == [directory / "0001.eml", directory / "0002.eml"]
        assert sink.received[0].read_bytes() == MESSAGE
        assert sink.received[1].read_bytes() == second
    assert sorted(p.name for p in directory.iterdir()) == ["0001.eml", "0002.eml"]


def test_the_smtp_sink_listens_on_loopback_only_while_entered(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path / "mail")
    assert (tmp_path / "mail").is_dir()  # made at once, before any mail
    with sink:
        port = sink.port
        assert port > 0
        assert not refused(port)
    assert refused(port)
    assert sink.received == []


def trusting(sink: HttpsSink) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sink.ca_file))


def test_the_https_sink_stores_each_post_body_from_a_client_that_trusts_its_ca(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "https"
    bodies = [b"\x1f\x8b\x08\x00first report", b"\x1f\x8b\x08\x00second report" * 1000]
    with (
        HttpsSink(directory, ["localhost"]) as sink,
        httpx.Client(verify=trusting(sink), timeout=10) as client,
    ):
        assert sink.ca_file == directory / "demo-ca.pem"
        assert sink.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        for body in bodies:
            response = client.post(
                f"https://localhost:{sink.port}/tlsrpt",
                content=body,
                headers={"Content-Type": "application/tlsrpt+gzip"},
            )
            assert response.status_code == 200
        assert sink.received == [directory / "0001.json.gz", directory / "0002.json.gz"]
        assert [p.read_bytes() for p in sink.received] == bodies


def test_the_https_sinks_certificate_names_the_hosts_it_was_given(tmp_path: Path) -> None:
    names = ["reports.example.com", "tlsrpt.example.org"]
    with (
        HttpsSink(tmp_path / "https", names) as sink,
        httpx.Client(verify=trusting(sink), timeout=10) as client,
    ):
        url = f"https://127.0.0.1:{sink.port}/v1/report"
        for name in names:  # as the demo's records name them; the address is loopback
            response = client.post(url, content=name.encode(), extensions={"sni_hostname": name})
            assert response.status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.post(url, content=b"x", extensions={"sni_hostname": "other.example.com"})
        assert [p.read_bytes() for p in sink.received] == [n.encode() for n in names]


def test_the_https_sink_is_refused_by_a_client_that_does_not_trust_its_ca(tmp_path: Path) -> None:
    with HttpsSink(tmp_path / "https", ["localhost"]) as sink, httpx.Client(timeout=10) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.post(f"https://localhost:{sink.port}/", content=b"report")
        assert sink.received == []


def test_the_https_sink_without_names_serves_localhost(tmp_path: Path) -> None:
    with (
        HttpsSink(tmp_path / "https", []) as sink,
        httpx.Client(verify=trusting(sink), timeout=10) as client,
    ):
        response = client.post(f"https://localhost:{sink.port}/", content=b"report")
        assert response.status_code == 200
        assert [p.read_bytes() for p in sink.received] == [b"report"]


def test_the_https_sink_stops_listening_and_serving_on_exit(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    sink = HttpsSink(tmp_path / "https", ["localhost"])
    with sink:
        port = sink.port
        assert not refused(port)
        assert set(threading.enumerate()) - before  # the thread that serves
    assert refused(port)
    deadline = time.monotonic() + 5  # the thread may take a moment to finish after its loop
    while not set(threading.enumerate()) <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) <= before  # ... has ended: nothing left behind
