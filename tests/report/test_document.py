"""The pure report builder and the shipped schema (RFC 8460 §4, §5.3)."""

from __future__ import annotations

import copy
import gzip
import json
import re
from typing import Any

import pytest
from support.lines import DAY, ME, STS, TLSA_FAILURE, line, tlsa

from tlsrpt_reporter.errors import ConfigError
from tlsrpt_reporter.report import document as report
from tlsrpt_reporter.report import schema
from tlsrpt_reporter.report.document import Identity, ReportError
from tlsrpt_reporter.report.schema import SchemaError


def test_a_success_only_day_is_a_full_valid_report() -> None:
    r = report.build(DAY, "example.com", [line()], ME)
    schema.validate(r.document)
    doc = r.document
    assert list(doc) == [
        "organization-name", "date-range", "contact-info", "report-id", "policies",
    ]  # fmt: skip
    assert doc["date-range"] == {
        "start-datetime": "2026-03-01T00:00:00Z",
        "end-datetime": "2026-03-01T23:59:59Z",
    }
    assert doc["policies"] == [
        {
            "policy": {
                "policy-type": "no-policy-found",
                "policy-string": [],
                "policy-domain": "example.com",
            },
            "summary": {"total-successful-session-count": 10, "total-failure-session-count": 0},
        }
    ]
    assert json.loads(gzip.decompress(r.gzip_bytes)) == doc
    assert "null" not in r.json_bytes.decode()


def test_report_id_is_a_stable_msg_id_and_the_file_name_follows_the_rfc() -> None:
    a = report.build(DAY, "example.com", [line()], ME)
    b = report.build(DAY, "example.com", [line(ok=99)], ME)
    assert a.report_id == b.report_id, "stable across rebuilds of the same report"
    assert a.report_id != report.build(DAY, "example.org", [line("example.org")], ME).report_id
    assert a.report_id != report.build("2026-03-02", "example.com",
                                       [{**line(), "day": "2026-03-02"}], ME).report_id  # fmt: skip
    left, right = a.report_id.split("@")
    assert right == "example.net", "the submitter is contact-info's domain, lower-cased"
    assert re.fullmatch(r"[A-Za-z0-9.]+", left) and ":" not in left
    # RFC 8460 §5.3: the Report-ID is a msg-id (dot-atom@dot-atom) without its brackets.
    atom = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    assert re.fullmatch(rf"{atom}(\.{atom})*@{atom}(\.{atom})*", a.report_id)
    assert a.document["report-id"] == a.report_id
    # RFC 8460 §5.3: submitter!policy-domain!begin!end!unique-id.json.gz
    m = re.fullmatch(r"example\.net!example\.com!(\d+)!(\d+)!([A-Za-z0-9]+)\.json\.gz", a.filename)
    assert m, a.filename
    assert int(m[1]) == 1772323200 and int(m[2]) == 1772323200 + 86399


def test_two_reporter_instances_build_different_report_ids_and_file_names() -> None:
    # RFC 8460 §4.4: the Report-ID is unique, also across reporters sharing a submitter.
    one = report.build(DAY, "example.com", [line()], Identity(ME.organization_name,
                                                              ME.contact_info, "a1"))  # fmt: skip
    two = report.build(DAY, "example.com", [line()], Identity(ME.organization_name,
                                                              ME.contact_info, "b2"))  # fmt: skip
    assert one.report_id.startswith("2026.03.01.a1.") and one.report_id.endswith("@example.net")
    assert two.report_id.startswith("2026.03.01.b2.")
    assert one.report_id != two.report_id and one.filename != two.filename
    assert re.fullmatch(r"example\.net!example\.com!\d+!\d+!a1[0-9a-f]{16}\.json\.gz", one.filename)
    schema.validate(one.document)
    with pytest.raises(ConfigError, match=r"reporter\.instance_id"):
        report.build(DAY, "example.com", [line()], Identity("Org", "a@example.net", "a.1"))


def test_policies_are_merged_across_lines_and_sources_and_details_add_up() -> None:
    detail = {"result-type": "certificate-expired", "sending-mta-ip": "192.0.2.1",
              "receiving-ip": "198.51.100.7", "failed-session-count": 2}  # fmt: skip
    lines = [
        line(policy=STS, ok=5, failed=2, details=[detail]),
        line(policy=STS, ok=7, failed=1, details=[{**detail, "failed-session-count": 1}]),
        # The same record spelled differently is the same record; the policy merges anyway.
        line(policy=STS, ok=1, record="v=TLSRPTv1;rua=mailto:r@example.com"),
        line(ok=3),
    ]
    r = report.build(DAY, "example.com", lines, ME)
    schema.validate(r.document)
    by_type = {p["policy"]["policy-type"]: p for p in r.document["policies"]}
    sts = by_type["sts"]
    assert sts["summary"] == {
        "total-successful-session-count": 13,
        "total-failure-session-count": 3,
    }
    assert sts["failure-details"] == [{**detail, "failed-session-count": 3}]
    assert sts["policy"]["mx-host"] == ["mail.example.com", "*.backup.example.com"]
    assert by_type["no-policy-found"]["summary"]["total-successful-session-count"] == 3
    assert r.totals.successful == 16 and r.totals.failed == 3


def test_dane_policies_keep_their_own_policy_domain_and_drop_mx_host() -> None:
    tlsa = {"policy-type": "tlsa", "policy-domain": "mx.example.com",
            "policy-string": ["3 1 1 AB"], "mx-host": ["mx.example.com"]}  # fmt: skip
    r = report.build(DAY, "example.com", [line(policy=tlsa)], ME)
    schema.validate(r.document)
    policy = r.document["policies"][0]["policy"]
    assert policy["policy-domain"] == "mx.example.com"
    assert "mx-host" not in policy


def test_an_mx_host_report_holds_the_dane_policies_naming_it_from_every_recipient_domain() -> None:
    # RFC 8460 §1.1: the TLSA base domain (the MX host) is the DANE policy's policy domain.
    lines = [
        line("a.example", policy=tlsa(), ok=5, failed=2, details=[TLSA_FAILURE]),
        line("a.example", policy={**STS, "policy-domain": "a.example"}, ok=7),
        line("a.example", ok=3),
        # Spelled as a cmd: source may send it: the same host, the same policy.
        line("b.example", policy=tlsa("MX.Provider.Example."), ok=1, failed=3,
             details=[{**TLSA_FAILURE, "failed-session-count": 3}]),
        line("b.example", policy=tlsa("mx.other.example"), ok=4),
        line("b.example", ok=9),
        {**line("c.example", policy=tlsa()), "day": "2026-03-02"},
    ]  # fmt: skip
    hosts = report.mx_host_lines(lines, DAY)
    assert set(hosts) == {"mx.provider.example", "mx.other.example"}
    r = report.build(DAY, "mx.provider.example", hosts["mx.provider.example"], ME)
    schema.validate(r.document)
    assert r.domain == "mx.provider.example"
    assert r.filename.startswith("example.net!mx.provider.example!")
    assert r.document["policies"] == [
        {
            "policy": {"policy-type": "tlsa", "policy-string": ["3 1 1 AB"],
                       "policy-domain": "mx.provider.example"},
            "summary": {"total-successful-session-count": 6, "total-failure-session-count": 5},
            "failure-details": [{**TLSA_FAILURE, "failed-session-count": 5}],
        }
    ]  # fmt: skip
    assert r.report_id != report.build(DAY, "a.example", lines, ME).report_id
    other_report = report.build(DAY, "mx.other.example", hosts["mx.other.example"], ME)
    (other,) = other_report.document["policies"]
    assert other["policy"]["policy-domain"] == "mx.other.example"
    assert other["summary"]["total-successful-session-count"] == 4


def test_a_dane_policy_naming_its_own_recipient_domain_is_no_extra_host_line() -> None:
    # Old Postfix leaves policy-domain empty (the collector makes it d), and a domain may be
    # its own MX: such lines are in that domain's report already and must not count twice.
    lines = [line("mx.provider.example", policy=tlsa(), ok=5), line("a.example", policy=tlsa())]
    (only,) = report.mx_host_lines(lines, DAY)["mx.provider.example"]
    assert only["summary"]["total-successful-session-count"] == 10, "a.example's, not its own"
    assert (only["domain"], only["record"]) == ("mx.provider.example", ""), "DNS decides"


def test_the_failure_detail_cap_keeps_the_largest_and_the_summary_keeps_every_session() -> None:
    details = [
        {"result-type": "starttls-not-supported", "receiving-ip": f"198.51.100.{i}",
         "failed-session-count": i}
        for i in range(1, 21)
    ]  # fmt: skip
    r = report.build(DAY, "example.com", [line(failed=210, details=details)], ME,
                     max_failure_details=5)  # fmt: skip
    kept = r.document["policies"][0]["failure-details"]
    assert [d["failed-session-count"] for d in kept] == [20, 19, 18, 17, 16]
    assert r.document["policies"][0]["summary"]["total-failure-session-count"] == 210
    assert r.totals.capped == 15
    assert "15 less frequent failure details were left out" in report.summary_text(r, ME)


def test_unknown_optional_values_and_bad_ips_are_omitted_never_null_or_empty() -> None:
    detail = {"result-type": "validation-failure", "sending-mta-ip": "not-an-ip",
              "receiving-ip": "", "receiving-mx-helo": None, "failed-session-count": 1}  # fmt: skip
    r = report.build(DAY, "example.com", [line(failed=1, details=[detail])], ME)
    schema.validate(r.document)
    assert r.document["policies"][0]["failure-details"] == [
        {"result-type": "validation-failure", "failed-session-count": 1}
    ]


def _sending_ips(setting: str) -> list[tuple[str | None, int]]:
    # Our MTA behind NAT (10.0.0.5, fd00::5), a shared-NAT one (100.64.0.1) and a public one.
    details = [
        {"result-type": "starttls-not-supported", "sending-mta-ip": ip,
         "receiving-ip": "198.51.100.9", "failed-session-count": n}
        for ip, n in (("10.0.0.5", 1), ("fd00::5", 2), ("100.64.0.1", 4), ("9.9.9.9", 8))
    ]  # fmt: skip
    r = report.build(DAY, "example.com", [line(failed=15, details=details)], ME,
                     sending_mta_ip=setting)  # fmt: skip
    schema.validate(r.document)
    assert r.document["policies"][0]["summary"]["total-failure-session-count"] == 15
    return [(d.get("sending-mta-ip"), d["failed-session-count"])
            for d in r.document["policies"][0]["failure-details"]]  # fmt: skip


def test_sending_mta_ip_as_seen_changes_nothing() -> None:
    expected = [("9.9.9.9", 8), ("100.64.0.1", 4), ("fd00::5", 2), ("10.0.0.5", 1)]
    assert _sending_ips("as-seen") == expected
    default = report.build(DAY, "example.com", [line(failed=1, details=[TLSA_FAILURE])], ME)
    assert default.document["policies"][0]["failure-details"][0]["sending-mta-ip"] == "192.0.2.1"


def test_sending_mta_ip_omit_private_drops_non_global_addresses_and_keeps_global_ones() -> None:
    # The three non-global details become equal without the field, so they merge (1+2+4).
    assert _sending_ips("omit-private") == [("9.9.9.9", 8), (None, 7)]


def test_sending_mta_ip_mapping_replaces_non_global_addresses_and_merges_equal_details() -> None:
    assert _sending_ips("1.0.0.1") == [("9.9.9.9", 8), ("1.0.0.1", 7)]
    # A public address the MTA saw stays, and merges with the mapped ones that equal it.
    assert _sending_ips("9.9.9.9") == [("9.9.9.9", 15)]


def test_identity_and_data_errors_are_refused_with_the_key_named() -> None:
    # A bad identity is the operator's configuration to fix (exit code 2); missing or odd data
    # is a runtime failure of the build.
    with pytest.raises(ConfigError, match="organization_name"):
        report.build(DAY, "example.com", [line()], Identity(" ", "a@example.net"))
    with pytest.raises(ConfigError, match="contact_info"):
        report.build(DAY, "example.com", [line()], Identity("Org", "nobody"))
    with pytest.raises(ReportError, match=r"no data for example\.org"):
        report.build(DAY, "example.org", [line()], ME)
    bad = line(failed=1, details=[{"result-type": "mystery", "failed-session-count": 1}])
    with pytest.raises(ReportError, match="mystery"):
        report.build(DAY, "example.com", [bad], ME)


def _valid() -> dict[str, Any]:
    detail = {"result-type": "certificate-expired", "sending-mta-ip": "192.0.2.1",
              "failed-session-count": 1}  # fmt: skip
    return report.build(DAY, "example.com", [line(policy=STS, failed=1, details=[detail])],
                        ME).document  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: d["policies"][0]["policy"].__setitem__("mx-host", "mail.example.com"),
         "mx-host must be an array (erratum 6241)"),
        (lambda d: d["policies"][0]["policy"].__setitem__("policy-string", "version: STSv1"),
         "policy-string must be an array"),
        (lambda d: d["policies"][0]["failure-details"][0].__setitem__("result-type", "other"),
         "only the eleven result types"),
        (lambda d: d["policies"][0]["failure-details"][0].__setitem__("sending-mta-ip", "x"),
         "a real IP string"),
        (lambda d: d["policies"][0]["failure-details"][0].__setitem__("receiving-ip", None),
         "no null"),
        (lambda d: d["policies"][0]["failure-details"][0].__setitem__("receiving-mx-helo", ""),
         "no empty string"),
        (lambda d: d.__setitem__("policies", {}), "policies is always an array"),
        (lambda d: d.__setitem__("report-id", "<a@b>"), "report-id without brackets"),
        (lambda d: d.__setitem__("report-id", "a:b@example.net"), "dot-atom left side"),
        (lambda d: d["date-range"].__setitem__("end-datetime", "2026-03-01"), "RFC 3339 time"),
        (lambda d: d.__delitem__("contact-info"), "contact-info is required"),
        (lambda d: d["policies"][0]["policy"].__delitem__("policy-domain"),
         "policy-domain always present"),
        (lambda d: d["policies"][0]["summary"].__setitem__("total-failure-session-count", 1.5),
         "integer counts"),
        (lambda d: d.__setitem__("extra", 1), "no unknown keys"),
    ],
)  # fmt: skip
def test_the_schema_rejects_what_strict_consumers_reject(mutate: Any, why: str) -> None:
    document = copy.deepcopy(_valid())
    schema.validate(document)
    mutate(document)
    with pytest.raises(SchemaError):
        schema.validate(document)


def test_every_report_of_the_bundled_sample_validates(tmp_path: Any) -> None:
    from tlsrpt_reporter.demo.run import sample_path
    from tlsrpt_reporter.store import collected as store
    from tlsrpt_reporter.wire.aggregate import Aggregate
    from tlsrpt_reporter.wire.decode import decode

    agg = Aggregate()
    for raw in sample_path().read_bytes().splitlines():
        agg.add(DAY, 1.0, decode(raw))
    conn = store.connect(tmp_path / "s.sqlite")
    store.write(conn, store.build_batch(agg))
    lines = list(store.iter_day(conn, DAY))
    domains = report.domains_of(lines, DAY)
    assert len(domains) > 250
    sessions = 0
    for domain in domains:
        r = report.build(DAY, domain, lines, ME)
        schema.validate(r.document)
        sessions += r.totals.successful + r.totals.failed
    assert sessions == 3000


def test_parsedmarc_reads_back_what_we_built() -> None:
    """parsedmarc is a real consumer (docs/sender-rules.md §8): it must read what we meant."""
    import parsedmarc

    tlsa = {"policy-type": "tlsa", "policy-domain": "mx.example.com",
            "policy-string": ["3 1 1 AB", "3 1 1 CD"]}  # fmt: skip
    detail = {"result-type": "tlsa-invalid", "sending-mta-ip": "2001:db8::25",
              "receiving-mx-hostname": "mx.example.com", "receiving-ip": "198.51.100.9",
              "failure-reason-code": "tlsa-no-match", "failed-session-count": 4}  # fmt: skip
    lines = [line(policy=STS, ok=8), line(policy=tlsa, ok=2, failed=4, details=[detail])]
    r = report.build(DAY, "example.com", lines, ME)
    parsed = parsedmarc.parse_smtp_tls_report_json(r.json_bytes.decode())
    assert parsed["organization_name"] == "Example Mail Ltd"
    assert parsed["report_id"] == r.report_id
    assert parsed["begin_date"] == "2026-03-01T00:00:00Z"
    assert parsed["end_date"] == "2026-03-01T23:59:59Z"
    got = {p["policy_type"]: p for p in parsed["policies"]}
    assert got["sts"]["policy_domain"] == "example.com"
    assert got["sts"]["policy_strings"] == STS["policy-string"]
    assert got["sts"]["successful_session_count"] == 8
    assert got["tlsa"]["policy_domain"] == "mx.example.com"
    assert got["tlsa"]["failed_session_count"] == 4
    assert got["tlsa"]["failure_details"] == [
        {"result_type": "tlsa-invalid", "failed_session_count": 4,
         "sending_mta_ip": "2001:db8::25", "receiving_ip": "198.51.100.9",
         "receiving_mx_hostname": "mx.example.com", "failure_reason_code": "tlsa-no-match"}
    ]  # fmt: skip
