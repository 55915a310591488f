"""What each RFC 8460 result type means for the receiving domain: likely cause and fix.

Pure data for ``inspect`` (and anyone explaining a report to a human). docs/result-types.md
carries the same texts word for word; tests/report/test_inspect.py checks that they agree, so change
both together. The codes themselves are RFC 8460 §4.3 (the IANA "Result Types" registry);
:data:`tlsrpt_reporter.model.RESULT_TYPES` is the list the sender uses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Advice:
    """The likely cause of a result type and what the receiving domain can do about it."""

    cause: str
    fix: str


ADVICE: dict[str, Advice] = {
    # RFC 8460 §4.3.1: negotiation failures.
    "starttls-not-supported": Advice(
        cause="The receiving MX did not offer STARTTLS after EHLO, or refused the STARTTLS "
        "command, so no TLS session could be started.",
        fix="Enable STARTTLS with a certificate on every MX host listed for the domain, and check "
        "that no firewall or 'SMTP inspection' middlebox strips STARTTLS from the EHLO answer.",
    ),
    "certificate-host-mismatch": Advice(
        cause="The MX presented a certificate whose names do not include the MX host name the "
        "sender connected to (for MTA-STS, a name allowed by the policy's mx lines).",
        fix="Serve a certificate whose subjectAltName lists every MX host name the domain "
        "publishes in MX records (and in its MTA-STS policy), on port 25 of each of them.",
    ),
    "certificate-expired": Advice(
        cause="The certificate the MX presented was past its expiry date (notAfter) when the "
        "session took place.",
        fix="Renew the certificate, reload the MTA so that it serves the new one, and monitor the "
        "expiry of the port-25 certificates, which web monitoring often misses.",
    ),
    "certificate-not-trusted": Advice(
        cause="The MX certificate could not be chained to a trust anchor the sender accepts: "
        "it is self-signed, issued by a private CA, or the MTA sends it without its "
        "intermediate certificates.",
        fix="Use a certificate from a publicly trusted CA and configure the MTA with the full "
        "chain (the server certificate followed by its intermediates).",
    ),
    "validation-failure": Advice(
        cause="TLS failed for a reason none of the other result types covers, such as no common "
        "protocol version or cipher, or a handshake aborted by either side.",
        fix="Read failure-reason-code and additional-information in the report, then reproduce "
        "the handshake, e.g. with 'openssl s_client -starttls smtp -connect MX:25'.",
    ),
    # RFC 8460 §4.3.2.1: DANE.
    "tlsa-invalid": Advice(
        cause="DANE: none of the TLSA records at _25._tcp.<MX host> matched the certificate or "
        "public key the MX presented, or the records themselves are unusable.",
        fix="Publish TLSA records that match the key or certificate the MX serves now; during a "
        "rollover publish the new record next to the old one before switching the MX.",
    ),
    "dnssec-invalid": Advice(
        cause="DANE: the sender's validating resolver returned no valid records: DNSSEC "
        "validation of the TLSA or MX host records failed (expired signatures, broken chain "
        "of trust, a wrong DS record).",
        fix="Check the zone with a DNSSEC analyser, re-sign it, and make sure the DS record at "
        "the parent matches the current key-signing key.",
    ),
    "dane-required": Advice(
        cause="The sender is configured to require DANE for this destination, but found no "
        "DNSSEC-validated TLSA records for the MX host.",
        fix="Publish DNSSEC-signed TLSA records at _25._tcp.<MX host> for every MX host, or ask "
        "the sending operator to stop requiring DANE for the domain.",
    ),
    # RFC 8460 §4.3.2.2: MTA-STS.
    "sts-policy-fetch-error": Advice(
        cause="MTA-STS: the policy could not be fetched from "
        "https://mta-sts.<domain>/.well-known/mta-sts.txt: the host did not resolve or "
        "answer, the answer was not 200, or it was a redirect.",
        fix="Make the policy URL answer 200 over HTTPS from the public Internet, without "
        "redirects, and keep the mta-sts host name in DNS.",
    ),
    "sts-policy-invalid": Advice(
        cause="MTA-STS: the policy was fetched but is not a valid policy: a wrong version line, "
        "a missing or bad mode, mx or max_age field, or a media type other than text/plain.",
        fix="Serve the policy as text/plain in the RFC 8461 §3.2 format (version: STSv1, mode, "
        "one mx line per pattern, max_age) and change the id in the _mta-sts TXT record when "
        "you change it.",
    ),
    "sts-webpki-invalid": Advice(
        cause="MTA-STS: the HTTPS certificate of the policy host mta-sts.<domain> failed "
        "validation (expired, not trusted, or not issued for that name).",
        fix="Serve mta-sts.<domain> with a valid certificate from a publicly trusted CA that "
        "names mta-sts.<domain>, and renew it in time.",
    ),
}
