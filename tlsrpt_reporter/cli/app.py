"""``tlsrpt-reporter``: the operator's command (docs/operating.md).

Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from tlsrpt_reporter import __version__, logs
from tlsrpt_reporter.cli import (
    check_record,
    commands,
    inspect_keys,
    push_cmd,
    summary_cmd,
    suppressed_cmd,
)
from tlsrpt_reporter.config.load import DEFAULT_CONFIG_PATH, load_collectd
from tlsrpt_reporter.config.schema import LOG_LEVELS
from tlsrpt_reporter.demo import run as demo
from tlsrpt_reporter.errors import ConfigError, InputError, TlsRptError
from tlsrpt_reporter.ingest import logfile as ingest
from tlsrpt_reporter.ingest import replay
from tlsrpt_reporter.report import inspect_files
from tlsrpt_reporter.store import collected as store

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _day(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day like 2026-03-01") from None


def cmd_export(args: argparse.Namespace) -> int:
    """Print one day's aggregates as JSON lines."""
    # Only [collectd] matters here: this runs on the MTA's host, where the reporter's sections
    # may name files that exist only on the reporter's.
    db = args.db or load_collectd(args.config).db
    conn = store.connect(db, create=False)
    try:
        out = sys.stdout
        for line in store.iter_day(conn, args.day):
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    finally:
        conn.close()
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a session log into a collector socket or straight into a collector database."""
    if args.into_db:
        done = replay.into_db(args.file, args.into_db)
        print(
            f"{done.sessions} sessions stored, {done.rejected} rejected, {done.skipped} blank "
            f"lines skipped; days: {', '.join(done.days) or 'none'}"
        )
        return EXIT_OK
    result = replay.to_socket(args.file, args.socket, rate=args.rate, wait=args.wait)
    print(f"sent {result.sent}, dropped {result.dropped}, skipped {result.skipped} blank lines")
    return EXIT_OK


def cmd_ingest_log(args: argparse.Namespace) -> int:
    """Read an MTA's log and fold its TLS outcomes into a collector database."""
    logs.setup("tlsrpt-reporter", args.log_level)
    db = args.db or load_collectd(args.config).db  # as in cmd_export
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.follow:
        if len(args.files) != 1 or args.files[0] == "-":
            raise ConfigError("--follow takes exactly one log file (standard input is followed "
                              "anyway: pipe into '-' without --follow)")  # fmt: skip
        result = ingest.follow(
            args.files[0], args.format, db, args.timezone, stop=stop, from_end=args.from_end
        )
    else:
        result = ingest.ingest_files(args.files, args.format, db, args.timezone, stop)
    print(result.summary())
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """Copy this MTA host's collected days into the fleet's PostgreSQL (docs/fleet.md)."""
    return push_cmd.command(args.config, args.days, args.host)


def cmd_build(args: argparse.Namespace) -> int:
    """Dry run: reports and signed mails into a directory; nothing sent or recorded."""
    return commands.cmd_build(args.config, args.db, args.day, Path(args.out), args.force)


def cmd_send(args: argparse.Namespace) -> int:
    """Build finished days and deliver what is due, then exit."""
    return commands.cmd_send(args.config, args.now)


def cmd_retry_failed(args: argparse.Namespace) -> int:
    """Build again the reports that were set aside."""
    if (args.day is None) == (not args.all):
        raise ConfigError("retry-failed takes a DAY or --all")
    return commands.cmd_retry_failed(args.config, args.day)


def cmd_run(args: argparse.Namespace) -> int:
    """The long-running reporter."""
    logs.setup("tlsrpt-reporter", args.log_level)
    return commands.cmd_run(args.config)


def cmd_status(args: argparse.Namespace) -> int:
    """Days, reports and deliveries."""
    return commands.cmd_status(args.config, args.day, fmt=args.format)


def cmd_summary(args: argparse.Namespace) -> int:
    """Which domains fail, how, and whether our reports were delivered."""
    return summary_cmd.command(args.config, days=args.days, day=args.day, html=args.html,
                               fmt=args.format, top=args.top)  # fmt: skip


def cmd_unsuppress(args: argparse.Namespace) -> int:
    """Send to a destination suppressed as dead again."""
    return suppressed_cmd.command(args.config, args.destination, args.all)


def cmd_check_config(args: argparse.Namespace) -> int:
    """What is missing or wrong for collecting and for sending."""
    return commands.cmd_check_config(args.config)


def cmd_check_record(args: argparse.Namespace) -> int:
    """Lint a domain's _smtp._tls record and try each of its rua destinations."""
    return check_record.command(args.config, args.domain, args.json)


def cmd_inspect(args: argparse.Namespace) -> int:
    """Validate and explain TLS-RPT report files (.json, .json.gz or .eml) and folders of them."""
    keys = inspect_keys.key_lookup(args.config, args.dkim_key, args.offline)
    return inspect_files.command(args.paths, keys, require_dkim=args.require_dkim)


def cmd_demo(args: argparse.Namespace) -> int:
    """The end-to-end main job on the embedded default."""
    return demo.run(keep=not args.clean)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``tlsrpt-reporter``."""
    parser = argparse.ArgumentParser(
        prog="tlsrpt-reporter", description="SMTP TLS Reporting (RFC 8460) for sending MTAs."
    )
    parser.add_argument("--config", help=f"TOML file (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every command also takes --config after its name (docs/operating.md).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser(
        "export", parents=[common], help="print a day's collected aggregates as JSON lines"
    )
    p.add_argument("--db", help="collector database (default: collectd.db of the config)")
    p.add_argument("--day", required=True, type=_day, help="UTC day, YYYY-MM-DD")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "replay", parents=[common], help="send a JSON-lines file of datagrams to a collector"
    )
    p.add_argument("file", help="one datagram object per line; - for standard input")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--socket", help="the collector's socket path (live datagrams)")
    target.add_argument("--into-db", help="fold the sessions straight into this collector database")
    p.add_argument("--rate", type=_positive_rate, help="datagrams per second (default: flat out)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for room when the collector's queue is full instead of dropping",
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "ingest-log", parents=[common], help="read TLS outcomes from a Postfix or Exim log"
    )
    p.add_argument("--format", required=True, choices=ingest.FORMATS, help="whose log it is")
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="log files in order (.gz too); - for stdin"
    )
    p.add_argument(
        "--follow", action="store_true",
        help="tail the one FILE across rotation, resuming where the last run stopped",
    )  # fmt: skip
    p.add_argument(
        "--from-end", action="store_true",
        help="with --follow and no saved position: start at the end instead of the start",
    )  # fmt: skip
    p.add_argument("--db", help="collector database (default: collectd.db of the config)")
    p.add_argument(
        "--timezone", metavar="ZONE",
        help="IANA zone of timestamps without one (default: the host's)",
    )  # fmt: skip
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    p.set_defaults(func=cmd_ingest_log)

    p = sub.add_parser(
        "push", parents=[common],
        help="copy this MTA host's collected days into the fleet's PostgreSQL (docs/fleet.md)",
    )  # fmt: skip
    p.add_argument(
        "--days", type=_whole(366), metavar="N",
        help="finished days pushed besides today (default push.days, 3)",
    )  # fmt: skip
    p.add_argument(
        "--host", metavar="NAME",
        help="the host name the rows carry (default push.host, else the machine's host name)",
    )  # fmt: skip
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "build", parents=[common], help="dry run: write a day's reports and signed mails to DIR"
    )
    p.add_argument("--day", required=True, type=_day, help="UTC day, YYYY-MM-DD")
    p.add_argument("--out", required=True, help="directory for the .json.gz and .eml files")
    p.add_argument("--db", help="collector database to read (instead of reporter.sources)")
    p.add_argument(
        "--force", action="store_true",
        help="build a day that has not finished (its end plus reporter.grace): a partial report",
    )  # fmt: skip
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "send", parents=[common], help="build finished days, deliver what is due, exit"
    )
    p.add_argument("--now", action="store_true", help="deliver every pending report now")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "retry-failed", parents=[common],
        help="build again the reports set aside because they could not be built",
    )  # fmt: skip
    p.add_argument("day", metavar="DAY", nargs="?", type=_day, help="the UTC day, YYYY-MM-DD")
    p.add_argument("--all", action="store_true", help="every day")
    p.set_defaults(func=cmd_retry_failed)

    p = sub.add_parser("run", parents=[common], help="the long-running reporter")
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", parents=[common], help="days, reports and deliveries")
    p.add_argument("--day", type=_day, help="only this UTC day")
    p.add_argument(
        "--format", choices=("text", "json", "prometheus"), default="text",
        help="text (default), json, or prometheus (text exposition format 0.0.4, for "
        "node-exporter's textfile collector)",
    )  # fmt: skip
    p.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "summary", parents=[common],
        help="which domains fail, how, and were our reports delivered (tables, JSON, HTML page)",
    )  # fmt: skip
    p.add_argument("--days", type=_count(366), default=30, help="days summarised (default 30)")
    p.add_argument("--day", type=_day, help="detail this UTC day; the window ends with it")
    p.add_argument("--html", metavar="DIR", help="also write the page DIR/index.html")
    p.add_argument("--format", choices=summary_cmd.FORMATS, default="text", help="default text")
    p.add_argument(
        "--top", type=_count(100_000), default=50,
        help="domains, changes and destinations listed (default 50, most failures first)",
    )  # fmt: skip
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "unsuppress", parents=[common],
        help="send again to a destination suppressed because every delivery to it failed",
    )  # fmt: skip
    p.add_argument(
        "destination", metavar="DEST", nargs="?",
        help="the destination as `status` lists it (mailto:addr or the https URI)",
    )  # fmt: skip
    p.add_argument("--all", action="store_true", help="every suppressed destination")
    p.set_defaults(func=cmd_unsuppress)

    p = sub.add_parser(
        "check-config", parents=[common], help="what is missing or wrong for collecting and sending"
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser(
        "check-record", parents=[common],
        help="lint DOMAIN's _smtp._tls record and try each rua (0 usable, 1 not)",
    )  # fmt: skip
    p.add_argument("domain", metavar="DOMAIN", help="the policy domain, e.g. example.com")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_check_record)

    p = sub.add_parser(
        "inspect", parents=[common],
        help="validate and explain report files: .json, .json.gz or .eml (0 all valid, 1 not)",
    )  # fmt: skip
    p.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="a report, a mail carrying one, or a folder of them; one file is shown in full, "
        "several one line each with a summary",
    )  # fmt: skip
    p.add_argument(
        "--dkim-key", action="append", default=[], metavar="FILE",
        help="check mail signatures against this key record (as published, or a zone-file "
        "line) instead of DNS; repeatable",
    )  # fmt: skip
    p.add_argument(
        "--offline", action="store_true", help="no DNS: count DKIM signatures, do not check them"
    )
    p.add_argument(
        "--require-dkim", action="store_true",
        help="a mail is valid only with a verified DKIM signature (RFC 8460 §5.3)",
    )  # fmt: skip
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "demo", parents=[common], help="run the collector on a bundled sample and export the day"
    )
    p.add_argument("--clean", action="store_true", help="remove the demo's directory at the end")
    p.set_defaults(func=cmd_demo)
    return parser


def _count(most: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        if not value.isdigit() or not 1 <= int(value) <= most:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to {most}")
        return int(value)

    return check


def _whole(most: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        if not value.isdigit() or int(value) > most:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 0 to {most}")
        return int(value)

    return check


def _positive_rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"--rate must be a positive number, got {value!r}")
    return rate


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlsrpt-reporter``."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except TlsRptError as exc:
        print(f"tlsrpt-reporter: {exc}", file=sys.stderr)
        return exit_code(exc)
    except BrokenPipeError:
        return EXIT_FAILURE


def exit_code(exc: TlsRptError) -> int:
    """The exit code of a command that failed with ``exc``: 2 when the operator's configuration,
    command line or input is at fault, 1 for a failure at run time."""
    return EXIT_USAGE if isinstance(exc, ConfigError | InputError) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
