"""A pushing host is trusted with its own rows only (row-level security), and even those may
be wrong: a compromised or broken MTA host can push values no report may carry. Such a row
costs the report of its own domain (set aside, with the reason), never the others' reports of
the day. Real pushes, a real cluster, the real `build` command."""

from __future__ import annotations

from pathlib import Path

from fleet_site import HOSTS, Fleet, reporter_config, split_and_push
from fleet_site import cli as fleet_cli
from support.site import session

from tlsrpt_reporter.schedule import timing

DAY = "2026-03-01"
START = timing.day_end(DAY) - 86400


def test_a_pushed_row_no_report_can_carry_costs_only_its_own_domains_report(
    fleet: Fleet, tmp_path: Path
) -> None:
    sessions = [
        (session(domain, f"v=TLSRPTv1; rua=mailto:r@{domain}", failed=True), START + 60 + n)
        for domain in ("bad.example", "good.example")
        for n in range(3)
    ]
    split_and_push(fleet, tmp_path, DAY, sessions, timing.day_end(DAY) + 3600)
    # What a broken host could write into its own rows: an unknown result type and a
    # 100,000-character host name.
    fleet.query(
        "UPDATE fleet_failure SET result_type = 'mystery',"
        " receiving_mx_hostname = repeat('x', 100000) WHERE policy_key IN"
        " (SELECT policy_key FROM fleet_policy WHERE domain = 'bad.example') RETURNING 1"
    )
    config = reporter_config(tmp_path / "r.toml", [fleet.url()], tmp_path / "state.sqlite",
                             expected_hosts=list(HOSTS))  # fmt: skip
    built = fleet_cli("build", "--day", DAY, "--out", tmp_path / "out", config=config)
    assert built.returncode == 0, built.stderr
    assert "report for bad.example on 2026-03-01 set aside" in built.stderr
    assert "unknown result-type 'mystery'" in built.stderr
    names = [path.name for path in (tmp_path / "out").glob("*.json.gz")]
    assert len(names) == 1 and "!good.example!" in names[0]
