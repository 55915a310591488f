"""HTTPS delivery (RFC 8460 §5.4) against a real TLS server on loopback, and its SSRF guard.

The resolve callback is a fixed zone (what the project's DNS resolver would answer); everything
after it, TCP, TLS, certificates and HTTP, is real. ``reports.test`` exists in no DNS, so a
request that arrives at all proves the client connected to the address we handed it.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme
from rigs.httpsserver import HttpsTestServer, Reply

from tlsrpt_reporter.config.schema import HttpsSettings
from tlsrpt_reporter.deliver.https import (
    CONTENT_TYPE,
    ForbiddenAddress,
    HttpsDeliveryError,
    InvalidReportUrl,
    IPAddress,
    PostResult,
    check_address,
    post_report,
)
from tlsrpt_reporter.errors import TlsRptError

BODY = gzip.compress(json.dumps({"report-id": "r1@example.net", "policies": []}).encode(), mtime=0)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


class Zone:
    """A fixed DNS answer per call (the last one repeats), counting the lookups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.calls: list[str] = []

    async def __call__(self, name: str) -> list[IPAddress]:
        self.calls.append(name)
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


def post(url: str, settings: HttpsSettings, resolve: Zone, body: bytes = BODY) -> PostResult:
    return asyncio.run(post_report(url, body, settings, resolve))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpsTestServer]:
    with HttpsTestServer(tmp_path) as srv:
        yield srv


@pytest.fixture
def settings(server: HttpsTestServer) -> HttpsSettings:
    return HttpsSettings(timeout=5.0, allow_private=LOOPBACK, ca_file=str(server.ca_file))


def test_post_carries_exact_gzip_body_and_media_type_with_name_in_host_and_sni(
    server: HttpsTestServer, settings: HttpsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy from the environment would swallow the request: trust_env=False must ignore it.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    zone = Zone(["127.0.0.1"])
    result = post(server.url("/v1/tlsrpt?src=x"), settings, zone)
    assert (result.status, result.address, result.body, result.truncated) == (
        200,
        "127.0.0.1",
        b"accepted",
        False,
    )
    assert "200" in str(result) and "127.0.0.1" in str(result)
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/v1/tlsrpt?src=x"
    assert request.body == BODY
    assert request.headers["content-type"] == CONTENT_TYPE == "application/tlsrpt+gzip"
    assert "content-encoding" not in request.headers  # the gzip is the body, not an encoding
    assert request.headers["host"] == f"reports.test:{server.port}"
    assert request.sni == "reports.test"
    assert request.peer == "127.0.0.1"
    assert zone.calls == ["reports.test"]


def test_default_port_is_443_and_left_out_of_host(tmp_path: Path) -> None:
    # No loopback server may bind 443 here; the URL is parsed, checked and refused first.
    zone = Zone(["127.0.0.1"])
    with pytest.raises(ForbiddenAddress) as info:
        post("https://Reports.TEST./v1", HttpsSettings(), zone)
    assert zone.calls == ["reports.test"]
    assert "127.0.0.1" in str(info.value)


def test_certificate_for_another_name_fails_retryably(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    with pytest.raises(HttpsDeliveryError) as info:
        post(server.url(name="other.test"), settings, Zone(["127.0.0.1"]))
    assert not info.value.permanent
    assert "certificate" in str(info.value).lower()
    assert "other.test" in str(info.value) and "127.0.0.1" in str(info.value)
    assert server.requests == []


def test_certificate_from_untrusted_ca_fails(
    server: HttpsTestServer, settings: HttpsSettings, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with pytest.raises(HttpsDeliveryError) as info:
        post(server.url(), replace(settings, ca_file=str(other_ca)), Zone(["127.0.0.1"]))
    assert "certificate" in str(info.value).lower()
    assert server.requests == []


def test_system_store_does_not_trust_a_private_ca(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    with pytest.raises(HttpsDeliveryError):
        post(server.url(), replace(settings, ca_file=None), Zone(["127.0.0.1"]))
    assert server.requests == []


def test_verify_certificates_false_accepts_untrusted_ca_and_wrong_name(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    # RFC 8460 §5.4: a sender MAY ignore certificate errors (operator option).
    insecure = replace(settings, ca_file=None, verify_certificates=False)
    result = post(server.url(name="other.test"), insecure, Zone(["127.0.0.1"]))
    assert result.status == 200
    assert server.requests[0].sni == "other.test"
    assert server.requests[0].body == BODY


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "::",
        "fc00::1",
        "fd00::2",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
        "ff02::1",
    ],
)
def test_non_global_address_is_refused_before_any_connection(
    server: HttpsTestServer, address: str
) -> None:
    settings = HttpsSettings(timeout=5.0, ca_file=str(server.ca_file))
    with pytest.raises(ForbiddenAddress) as info:
        post(server.url(), settings, Zone([address]))
    assert info.value.permanent
    assert str(ipaddress.ip_address(address)) in str(info.value)
    assert "allow_private" in str(info.value)
    assert server.connections == []


def test_ip_literal_host_is_checked_too(server: HttpsTestServer) -> None:
    zone = Zone(["8.8.8.8"])
    settings = HttpsSettings(timeout=5.0, ca_file=str(server.ca_file))
    with pytest.raises(ForbiddenAddress):
        post(f"https://127.0.0.1:{server.port}/v1", settings, zone)
    with pytest.raises(ForbiddenAddress):
        post(f"https://[::ffff:127.0.0.1]:{server.port}/v1", settings, zone)
    assert zone.calls == []
    assert server.connections == []


def test_ip_literal_host_connects_without_resolving_and_checks_the_address(
    tmp_path: Path,
) -> None:
    with HttpsTestServer(tmp_path, names=("127.0.0.1",)) as srv:
        zone = Zone(["8.8.8.8"])
        settings = HttpsSettings(timeout=5.0, allow_private=LOOPBACK, ca_file=str(srv.ca_file))
        result = post(f"https://127.0.0.1:{srv.port}/v1", settings, zone)
    assert result.status == 200
    assert zone.calls == []
    assert srv.requests[0].headers["host"] == f"127.0.0.1:{srv.port}"
    assert srv.requests[0].sni is None  # no SNI for an address (RFC 6066 §3)


def test_rebinding_cannot_move_the_connection_after_the_check(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    # A rebinding name answers the allowed address first, then an internal one.
    zone = Zone(["127.0.0.1"], ["10.0.0.1"], ["169.254.169.254"])
    result = post(server.url(), settings, zone)
    assert result.address == "127.0.0.1"
    assert zone.calls == ["reports.test"]  # resolved once; the transport never resolved again
    assert server.connections == ["127.0.0.1"]


def test_forbidden_answers_are_dropped_and_only_checked_ones_used(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    result = post(server.url(), settings, Zone(["10.0.0.1", "192.168.0.1", "127.0.0.1"]))
    assert result.address == "127.0.0.1"
    assert server.connections == ["127.0.0.1"]


def test_next_checked_address_is_tried_when_one_refuses_connections(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    # The server listens on 127.0.0.1 only, so 127.0.0.2 refuses the TCP connection.
    result = post(server.url(), settings, Zone(["127.0.0.2", "127.0.0.1"]))
    assert result.address == "127.0.0.1"
    assert len(server.requests) == 1


def test_no_listener_is_a_retryable_failure_naming_the_address(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    with pytest.raises(HttpsDeliveryError) as info:
        post(server.url(), settings, Zone(["127.0.0.2"]))
    assert not info.value.permanent
    assert info.value.address == "127.0.0.2"
    assert "127.0.0.2" in str(info.value)


def test_server_error_is_a_retryable_failure(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    server.script(Reply(500, body=b"database down"))
    with pytest.raises(HttpsDeliveryError) as info:
        post(server.url(), settings, Zone(["127.0.0.1"]))
    assert not info.value.permanent
    assert info.value.status == 500
    message = str(info.value)
    assert server.url() in message and "127.0.0.1" in message
    assert "500" in message and "database down" in message


def test_retry_after_server_error_delivers_the_same_bytes(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    # RFC 8460 §5.5: the caller retries; the second attempt is a fresh, complete POST.
    server.script(Reply(500), Reply(201, body=b""))
    zone = Zone(["127.0.0.1"])
    with pytest.raises(HttpsDeliveryError):
        post(server.url(), settings, zone)
    result = post(server.url(), settings, zone)
    assert result.status == 201
    assert [r.body for r in server.requests] == [BODY, BODY]


def test_client_error_is_retryable_too(server: HttpsTestServer, settings: HttpsSettings) -> None:
    server.script(Reply(413, body=b"too large"))
    with pytest.raises(HttpsDeliveryError) as info:
        post(server.url(), settings, Zone(["127.0.0.1"]))
    assert (info.value.status, info.value.permanent) == (413, False)


def test_redirect_is_a_failure_and_not_followed(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    server.script(Reply(302, headers={"Location": server.url("/elsewhere")}))
    with pytest.raises(HttpsDeliveryError) as info:
        post(server.url(), settings, Zone(["127.0.0.1"]))
    assert info.value.status == 302
    assert not info.value.permanent
    assert "not followed" in str(info.value)
    assert [r.path for r in server.requests] == ["/v1/tlsrpt"]


@pytest.mark.parametrize(
    ("reply", "shortest", "says"),
    [
        pytest.param(
            Reply(delay=10.0), 0.4, "timed out",
            id="slow-server-times-out-within-the-configured-bound",
        ),
        # Every byte arrives well within the read timeout; only the whole-exchange bound stops it.
        pytest.param(
            Reply(filler=1000, trickle=0.1), 1.4, "within 1.5s",
            id="trickling-server-is-cut-off-by-the-total-deadline",
        ),
    ],
)  # fmt: skip
def test_a_server_too_slow_for_the_configured_timeout_is_a_temporary_failure(
    server: HttpsTestServer, settings: HttpsSettings, reply: Reply, shortest: float, says: str
) -> None:
    server.script(reply)
    started = time.monotonic()
    with pytest.raises(HttpsDeliveryError) as info:
        post(server.url(), replace(settings, timeout=0.5), Zone(["127.0.0.1"]))
    elapsed = time.monotonic() - started
    assert shortest < elapsed < 3.0
    assert not info.value.permanent
    assert says in str(info.value)


def test_huge_response_is_read_only_up_to_the_cap(
    server: HttpsTestServer, settings: HttpsSettings
) -> None:
    huge = 200 * 1024 * 1024
    server.script(Reply(body=b"ok", filler=huge))
    started = time.monotonic()
    result = post(server.url(), replace(settings, max_response_bytes=1000), Zone(["127.0.0.1"]))
    assert time.monotonic() - started < 5.0
    assert result.status == 200
    assert len(result.body) == 1000 and result.body.startswith(b"okxxx")
    assert result.truncated
    assert server.filler_sent < huge


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://reports.test/v1", "scheme"),
        ("mailto:tlsrpt@example.com", "scheme"),
        ("ftp://reports.test/", "scheme"),
        ("https://user@reports.test/v1", "user information"),
        ("https://user:secret@reports.test/v1", "user information"),
        ("https:///v1", "host"),
        ("https://reports.test:0/", "port"),
        ("https://reports.test:70000/", "port"),
        ("https://[::1/", "malformed"),
    ],
)
def test_unusable_url_is_a_permanent_error_without_lookup(url: str, problem: str) -> None:
    zone = Zone(["8.8.8.8"])
    with pytest.raises(InvalidReportUrl) as info:
        post(url, HttpsSettings(), zone)
    assert info.value.permanent
    assert problem in str(info.value)
    assert zone.calls == []


def test_resolver_failure_and_empty_answer_are_retryable() -> None:
    async def failing(name: str) -> list[IPAddress]:
        raise TlsRptError(f"SERVFAIL for {name}")

    with pytest.raises(HttpsDeliveryError) as info:
        asyncio.run(post_report("https://reports.test/v1", BODY, HttpsSettings(), failing))
    assert not info.value.permanent and "SERVFAIL" in str(info.value)
    with pytest.raises(HttpsDeliveryError) as info:
        post("https://reports.test/v1", HttpsSettings(), Zone([]))
    assert not info.value.permanent and "no address" in str(info.value)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_destination_allowed_by_network(tmp_path: Path) -> None:
    with HttpsTestServer(tmp_path, host="::1") as srv:
        allow = (ipaddress.ip_network("::1/128"),)
        settings = HttpsSettings(timeout=5.0, allow_private=allow, ca_file=str(srv.ca_file))
        result = post(srv.url(), settings, Zone(["::1"]))
    assert result.address == "::1"
    assert srv.requests[0].headers["host"] == f"reports.test:{srv.port}"
    assert srv.requests[0].sni == "reports.test"


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_global_addresses_pass_the_check(address: str) -> None:
    check_address(ipaddress.ip_address(address), HttpsSettings())


def test_allow_private_admits_only_its_networks() -> None:
    settings = HttpsSettings(allow_private=(ipaddress.ip_network("10.20.0.0/16"),))
    check_address(ipaddress.ip_address("10.20.1.2"), settings)
    check_address(ipaddress.ip_address("::ffff:10.20.1.2"), settings)
    with pytest.raises(ForbiddenAddress):
        check_address(ipaddress.ip_address("10.21.1.2"), settings)
