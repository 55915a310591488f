"""``tlsrpt-collectd``: the daemon's lifecycle, from the socket to the last flush.

It binds the socket (``listener``) or takes it from systemd, starts the receive process
(``receiver``), feeds what that hands over to the intake (``intake``: decode and aggregate),
and every ``flush_interval`` (or once a backlog is worked off) writes the aggregate as counter
upserts in one transaction through aiosqlite. When the database cannot be written the aggregate
stays in memory (bounded) and the next flush tries again. SIGTERM stops receiving, drains the
queue and flushes everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import aiosqlite

from tlsrpt_collectd import check_config, listener, metrics, system
from tlsrpt_collectd.intake import Intake
from tlsrpt_collectd.metrics_file import MetricsFile
from tlsrpt_collectd.receiver import Senders
from tlsrpt_reporter import __version__, logs, utc
from tlsrpt_reporter.config import check as config_check
from tlsrpt_reporter.config.load import DEFAULT_CONFIG_PATH
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.errors import CollectorError, ConfigError, StoreError
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import collected_async as store_async

log = logging.getLogger("tlsrpt-collectd")

_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20
_READ_CHUNK = 1 << 20
_PRUNE_EVERY = 3600.0
_STATS_EVERY = 300.0
_SHUTDOWN_WRITE_DEADLINE = 30.0
# Receive to aggregate while keeping up: hand-over every 20 ms (receiver), pipe, decoding.
_HANDOVER = 0.03


class Collector:
    """One running collector: socket, receive process, aggregate and database.

    ``senders``: ``cfg.allowed_users``/``allowed_groups`` resolved to ids
    (:func:`listener.resolve_senders`); None lets in every writer the socket's permissions do.
    """

    def __init__(self, cfg: CollectdConfig, senders: Senders | None = None) -> None:
        self.cfg = cfg
        self.senders = senders
        self.limiter = logs.RepeatLimiter()
        self.stopping = False
        self.write_failing_since: float | None = None
        self.counters = metrics.Counters(started=time.time())
        self.intake = Intake(
            cfg, self.counters, self.limiter, on_ready=self._ready, on_many_keys=self._flush_soon
        )
        self.metrics_file = MetricsFile(cfg.metrics_file, self.counters, self.intake.agg)
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe_fd = -1
        self._reader_on = False
        self._eof: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._owns_socket = False
        self._where = ""
        self._behind, self._early_from = False, 0.0  # a full last read; no early write before

    # --- receive process -------------------------------------------------------------------

    def _spawn_receiver(self, sock_fd: int) -> None:
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):
            # A larger pipe absorbs a short stall here; the receiver buffers beyond it anyway.
            fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        cmd = [
            sys.executable,
            "-m",
            "tlsrpt_collectd.receiver",
            str(sock_fd),
            str(write_fd),
            str(self.cfg.max_datagram_size),
            str(self.cfg.max_backlog_bytes),
            str(int(self._owns_socket)),
            *(self.senders.to_args() if self.senders is not None else ()),
        ]
        self._proc = subprocess.Popen(cmd, pass_fds=(sock_fd, write_fd))
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._pipe_fd = read_fd
        self.intake.buf.clear()

    def _reading(self, on: bool) -> None:
        """Start or pause taking frames from the receive process (which buffers meanwhile)."""
        if self._pipe_fd < 0 or on == self._reader_on:
            return
        loop = asyncio.get_running_loop()
        if on:
            loop.add_reader(self._pipe_fd, self._on_pipe)
        else:
            loop.remove_reader(self._pipe_fd)
        self._reader_on = on

    def _on_pipe(self) -> None:
        try:
            chunk = os.read(self._pipe_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            self._reading(False)
            os.close(self._pipe_fd)
            self._pipe_fd = -1
            assert self._eof is not None
            self._eof.set()
            return
        self.intake.buf += chunk
        self.intake.consume()
        was_behind, self._behind = self._behind, len(chunk) == _READ_CHUNK
        if was_behind and not self._behind and time.monotonic() >= self._early_from:
            self._flush_soon()

    # --- database -------------------------------------------------------------------------

    async def _flush(self, db: aiosqlite.Connection) -> bool:
        """Write what is held; False (data kept in memory) when the database refused."""
        self.intake.fold()
        received_before = self.counters.received
        if self.intake.agg.is_empty():
            self.counters.written = received_before
            return True
        taken = self.intake.agg.take()
        self.intake.agg.reserved, self.intake.agg.reserved_bytes = len(taken), taken.held_bytes
        batch = store.build_batch(taken)
        started = time.monotonic()
        # While SQLite works in aiosqlite's thread, this one must not compete for the GIL: it
        # is taken back after every row, each time a switch interval against a busy decoder
        # (16,620 keys took 3.9 s, not 0.2 s). The receive process buffers meanwhile.
        self._reading(False)
        try:
            await store_async.write(db, batch)
        except sqlite3.Error as exc:
            self.intake.agg.reserved = self.intake.agg.reserved_bytes = 0
            self.intake.agg.merge(taken)
            self.counters.held_bytes = self.intake.agg.held_bytes
            self.counters.flush_errors += 1
            now = time.time()
            self.write_failing_since = self.write_failing_since or now
            if self.limiter.allow("db-write", now) is not None:
                log.error(
                    "CANNOT WRITE DATABASE %s: %s; holding %d keys, ~%d MiB in memory (limits: "
                    "collectd.max_pending_keys, max_held_bytes) and retrying every %.1f s",
                    self.cfg.db,
                    exc,
                    len(self.intake.agg),
                    self.intake.agg.held_bytes >> 20,
                    self.cfg.flush_interval,
                )
            return False
        finally:
            self._reading(True)
        self.intake.agg.reserved = self.intake.agg.reserved_bytes = 0
        self.counters.held_bytes = self.intake.agg.held_bytes
        elapsed = time.monotonic() - started
        self.counters.flushed(elapsed, time.time(), received_before)
        if log.isEnabledFor(logging.DEBUG):
            held, rss = taken.held_bytes, system.rss()
            log.debug(
                "flushed %d keys (~%d bytes) in %.3f s (rss %s)", len(taken), held, elapsed, rss
            )
        if self.write_failing_since is not None:
            log.warning(
                "database %s is writable again after %.0f s; wrote %d held keys",
                self.cfg.db,
                time.time() - self.write_failing_since,
                len(taken),
            )
            self.write_failing_since = None
        return True

    async def _prune(self, db: aiosqlite.Connection) -> None:
        before = utc.day(time.time() - self.cfg.retention_days * 86400)
        try:
            await store_async.prune(db, before)
        except sqlite3.Error as exc:
            log.warning("retention: could not delete days before %s: %s", before, exc)

    async def _flush_loop(self, db: aiosqlite.Connection) -> None:
        assert self._wake is not None
        last_prune = time.monotonic()
        last_stats = time.monotonic()
        interval, took = self.cfg.flush_interval, 0.0
        next_at = last_stats + interval
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_at - time.monotonic()))
            if self.stopping:
                break
            self._wake.clear()
            started = time.monotonic()
            self._early_from = started + interval / 2
            await self._flush(db)
            # What a SIGKILL loses (docs/operating.md): a datagram that just missed this write
            # is in the next one, which must end within flush_interval of its arrival. So the
            # next write starts early by what the recent ones took (a slowly fading maximum) and
            # by the hand-over; never sooner than half an interval, so that reading gets a share.
            took = max(took * 0.9, time.monotonic() - started)
            next_at = started + max(interval / 2, interval - took - _HANDOVER)
            now = time.monotonic()
            self.metrics_file.publish(now)
            if now - last_prune >= _PRUNE_EVERY:
                last_prune = now
                await self._prune(db)
            if now - last_stats >= _STATS_EVERY:
                last_stats = now
                log.info("totals since start: %s", self.counters.summary())
        self._reading(True)  # _flush_soon may have paused it; the pipe must be read to its end

    # --- lifecycle ------------------------------------------------------------------------

    def _ready(self) -> None:
        log.info("ready: receiving on %s", self._where)
        system.sd_notify(b"READY=1")

    def _flush_soon(self) -> None:
        # Not while the database refuses writes: the next interval retries anyway.
        if self.write_failing_since is None and self._wake is not None:
            self._reading(False)  # nothing more until that write: the byte bound must hold
            self._wake.set()

    def _stop(self, signum: int) -> None:
        if self.stopping:
            return
        log.info("%s: stopping, flushing what was received", signal.Signals(signum).name)
        self.stopping = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        assert self._wake is not None
        self._wake.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; 0 after a full flush, 1 when data could not be written."""
        loop = asyncio.get_running_loop()
        self._eof = asyncio.Event()
        self._wake = asyncio.Event()
        try:
            store.connect(self.cfg.db).close()
        except StoreError as exc:
            log.error("%s", exc)
            return 1
        sock = listener.from_systemd()
        bound = None
        if sock is None:
            bound = listener.bind(self.cfg.socket, self.cfg.socket_mode, self.cfg.socket_group)
            sock = bound.sock
            self._owns_socket = True
            self._where = self.cfg.socket
        else:
            self._where = f"{sock.getsockname() or 'an unnamed socket'} (from systemd)"
        try:
            if self.senders is not None:
                self._pass_credentials(sock)
            return await self._serve(loop, sock.fileno())
        finally:
            if bound is not None:
                bound.close()
            else:
                sock.close()

    def _pass_credentials(self, sock: socket.socket) -> None:
        """Have the kernel tell each datagram's sender (SO_PASSCRED), which the file's mode and
        group cannot: they decide who may open the socket, not who is sending now."""
        assert self.senders is not None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        except OSError as exc:
            raise CollectorError(
                f"cannot enable SO_PASSCRED on the socket ({exc.strerror}), which "
                "collectd.allowed_users/allowed_groups need"
            ) from None
        log.info(
            "only uids %s or gids %s may send (collectd.allowed_users, collectd.allowed_groups)",
            _ids_text(self.senders.uids),
            _ids_text(self.senders.gids),
        )

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock_fd: int) -> int:
        assert self._eof is not None
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop, signum)
        db = await store_async.connect(self.cfg.db)
        try:
            await self._prune(db)
            self._spawn_receiver(sock_fd)
            system.yield_to_receiver()
            self._reading(True)
            log.info(
                "listening on %s, writing to %s every %.1f s (queue length %s)",
                self._where,
                self.cfg.db,
                self.cfg.flush_interval,
                system.qlen(),
            )
            flusher = asyncio.create_task(self._flush_loop(db))
            while True:
                await self._eof.wait()
                assert self._proc is not None
                code = self._proc.wait()
                if self.stopping:
                    break
                log.error("the receive process exited with code %s; starting a new one", code)
                await asyncio.sleep(1.0)
                self._eof.clear()
                self._spawn_receiver(sock_fd)
                self._reading(True)
            await flusher
            return await self._final_flush(db)
        finally:
            await db.close()

    async def _final_flush(self, db: aiosqlite.Connection) -> int:
        deadline = time.monotonic() + _SHUTDOWN_WRITE_DEADLINE
        while not await self._flush(db):
            if time.monotonic() > deadline:
                log.error(
                    "giving up: %d held keys could not be written to %s and are lost",
                    len(self.intake.agg),
                    self.cfg.db,
                )
                return 1
            await asyncio.sleep(min(1.0, self.cfg.flush_interval))
        await self.metrics_file.write_last()
        log.info("stopped: %s", self.counters.summary())
        return 0


def _ids_text(ids: frozenset[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids)) or "(none)"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``tlsrpt-collectd``."""
    p = argparse.ArgumentParser(
        prog="tlsrpt-collectd",
        description="Collect SMTP TLS outcomes from libtlsrpt datagrams into SQLite.",
    )
    p.add_argument("--config", help=f"TOML file (default {DEFAULT_CONFIG_PATH})")
    p.add_argument("--socket", help="Unix datagram socket path (collectd.socket)")
    p.add_argument("--db", help="SQLite database path (collectd.db)")
    p.add_argument("--log-level", help="debug, info, warning or error (collectd.log_level)")
    p.add_argument("--flush-interval", type=float, help="seconds between writes")
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def load_config(args: argparse.Namespace) -> CollectdConfig:
    """The [collectd] config with command-line overrides applied (ConfigError when bad)."""
    cfg = config_check.collectd_config(
        args.config,
        socket=args.socket,
        db=args.db,
        log_level=args.log_level,
        flush_interval=args.flush_interval,
    )
    if cfg.socket_group:
        listener.check_group(cfg.socket_group)
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tlsrpt-collectd``."""
    args = build_parser().parse_args(argv)
    if args.check_config:
        return check_config.run(args)
    try:
        cfg = load_config(args)
        senders = listener.resolve_senders(cfg)
    except (ConfigError, CollectorError) as exc:
        print(f"tlsrpt-collectd: {exc}", file=sys.stderr)
        return 2
    logs.setup("tlsrpt-collectd", cfg.log_level)
    try:
        return asyncio.run(Collector(cfg, senders).run())
    except CollectorError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
