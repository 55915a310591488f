"""``tlsrpt-collectd --check-config``: what the collector would make of its configuration.

Only what the collector uses (``[collectd]``, its directories, the socket's group, the users and
groups it names): the reporter's sections are ``tlsrpt-reporter check-config``'s, and an MTA
host of a fleet may run only the collector. The findings are ``config.check``'s, printed one
line each.
"""

from __future__ import annotations

import argparse
import sys

from tlsrpt_reporter.config import check as config_check
from tlsrpt_reporter.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    """Print the findings, one line each; 0 when the collector would run as intended, 2 when it
    would not."""
    try:
        cfg, findings = config_check.collector_check(
            args.config,
            socket=args.socket,
            db=args.db,
            log_level=args.log_level,
            flush_interval=args.flush_interval,
        )
    except ConfigError as exc:
        print(f"tlsrpt-collectd: {exc}", file=sys.stderr)
        return 2
    # What will not work goes to standard error, like every error of the collector (the
    # journal's priority); flushed line by line, so a terminal shows them in order.
    for finding in findings:
        print(finding, file=sys.stderr if finding.problem else sys.stdout, flush=True)
    if any(finding.problem for finding in findings):
        return 2
    print(f"tlsrpt-collectd: {config_check.collectd_verdict(cfg)}")
    return 0
