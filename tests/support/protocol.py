"""docs/protocol.md restated for the tests, independently of the code that implements it."""

from __future__ import annotations

# docs/protocol.md, the result-code table (code -> RFC 8460 result-type).
SPEC_RESULT_CODES = {
    201: "starttls-not-supported",
    202: "certificate-host-mismatch",
    203: "certificate-not-trusted",
    204: "certificate-expired",
    205: "validation-failure",
    301: "sts-policy-fetch-error",
    302: "sts-policy-invalid",
    303: "sts-webpki-invalid",
    304: "tlsa-invalid",
    305: "dnssec-invalid",
    306: "dane-required",
}
