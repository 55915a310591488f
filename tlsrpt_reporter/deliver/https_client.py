"""The TLS context and the HTTP client that report POSTs (:mod:`.https`) and ``check-record``'s
probes (:mod:`.https_probe`) use: which certificates are trusted, and what the client must
never take from its environment (proxies, credentials) or do on its own (follow redirects).
"""

from __future__ import annotations

import ssl

import certifi
import httpx

from tlsrpt_reporter.config.schema import HttpsSettings


def ssl_context(settings: HttpsSettings, verify: bool | None = None) -> ssl.SSLContext:
    """The TLS client context for report endpoints; ``verify`` overrides
    ``settings.verify_certificates`` (check-record probes both ways)."""
    if not (settings.verify_certificates if verify is None else verify):
        # RFC 8460 §5.4: a sender MAY ignore certificate errors; here only by operator choice.
        # SNI is still sent, so virtual hosts pick the right site.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if settings.ca_file:
        return ssl.create_default_context(cafile=settings.ca_file)
    context = ssl.create_default_context()
    if not context.cert_store_stats()["x509_ca"]:
        # Some Python builds find no system store; certifi's bundle beats failing every POST.
        # (A capath-only store also counts 0 here; adding certifi to it loses nothing.)
        context.load_verify_locations(cafile=certifi.where())
    return context


def client_for(settings: HttpsSettings, context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    """The HTTP client of one POST: TLS as :func:`ssl_context` says (``context``, made from
    ``settings`` when None), nothing from the environment, no redirects, ``settings.timeout``
    for each phase.

    A client per POST, never shared: its pool would key connections by the checked address
    the request names, and a second rua host on that address would be sent over the first
    one's TLS session (its SNI, its certificate). The TLS context is shared freely: building
    one loads the CA bundle, the cost that matters with thousands of POSTs in a pass.
    """
    verify = context if context is not None else ssl_context(settings)
    transport = httpx.AsyncHTTPTransport(verify=verify, trust_env=False, retries=0)
    # No proxy, netrc credentials or CA bundle from the environment: a proxy would connect to
    # the name itself, undoing the address check. The explicit transport already keeps httpx
    # from mounting *_PROXY variables; trust_env=False says so and covers netrc.
    # No redirects: a 3xx is a failure like any non-2xx (RFC 8460 §5.4), and following one
    # would reach an address nobody checked.
    return httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(settings.timeout),
    )
