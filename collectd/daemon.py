"""``tlsrpt-collectd``: decode what the receive process hands over, aggregate, flush to SQLite.

The receive path never waits on this process (see ``receiver``): here, datagrams are decoded
and folded into an in-memory :class:`~tlsrpt_reporter.wire.aggregate.Aggregate`, and every
``flush_interval`` the aggregate is written as counter upserts in one transaction through
aiosqlite. When the database cannot be written the aggregate stays in memory (bounded) and the
next flush tries again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiosqlite

from tlsrpt_collectd import listener, metrics
from tlsrpt_collectd.receiver import (
    DENIED_ENTRY,
    ENTRY,
    HEADER,
    KIND_BATCH,
    KIND_DENIED,
    KIND_DROPPED,
    KIND_READY,
    OVERSIZE_FLAG,
    UNKNOWN_ID,
    Senders,
)
from tlsrpt_reporter import logs
from tlsrpt_reporter.config import check as config_check
from tlsrpt_reporter.config.load import DEFAULT_CONFIG_PATH
from tlsrpt_reporter.config.schema import CollectdConfig
from tlsrpt_reporter.errors import CollectorError, ConfigError, DatagramRejected, StoreError
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import collected_async as store_async
from tlsrpt_reporter.wire.aggregate import C_DROPPED_MEMORY, Aggregate
from tlsrpt_reporter.wire.decode import CachingDecoder

log = logging.getLogger("tlsrpt-collectd")

_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20
_READ_CHUNK = 1 << 20
_PRUNE_EVERY = 3600.0
_STATS_EVERY = 300.0
_SHUTDOWN_WRITE_DEADLINE = 30.0
_DROPPED_BACKLOG = "dropped:backlog-full"
# A rejection the collector makes itself, beside the decoder's (wire.REJECT_REASONS): a datagram
# from a sender collectd.allowed_users/allowed_groups do not let in. Counted like the others,
# as "rejected:<reason>" per day and in the metrics.
SENDER_NOT_ALLOWED = "sender-not-allowed"
# The metrics file is rewritten after a flush, at most this often (seconds).
_METRICS_EVERY = 1.0
# Distinct datagrams counted between folds; past it they are folded at once: raw datagrams
# cost far more memory than their folded counts (100,000 new domains in a burst).
_MAX_FRONT = 5_000
# Keys held in the aggregate that make the writer flush before the interval ends.
_EARLY_FLUSH_KEYS = 10_000
# Added to this process's niceness once the receive process runs (see _yield_to_receiver).
_DAEMON_NICENESS = 5


def utc_day(when: float) -> str:
    """The UTC day of a Unix time as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(when))


class Collector:
    """One running collector: socket, receive process, aggregate and database.

    ``senders``: ``cfg.allowed_users``/``allowed_groups`` resolved to ids
    (:func:`listener.resolve_senders`); None lets in every writer the socket's permissions do.
    """

    def __init__(self, cfg: CollectdConfig, senders: Senders | None = None) -> None:
        self.cfg = cfg
        self.senders = senders
        self.agg = Aggregate(max_keys=cfg.max_pending_keys)
        self.decoder = CachingDecoder(max_size=cfg.max_datagram_size)
        self.limiter = logs.RepeatLimiter()
        self.stopping = False
        self.write_failing_since: float | None = None
        self.counters = metrics.Counters(started=time.time())
        self._metrics_writing: asyncio.Task[None] | None = None
        self._metrics_written_at = -math.inf
        self._metrics_error = ""
        self._metrics_error_at = 0.0
        self._buf = bytearray()
        self._day_cache: tuple[int, str] = (-1, "")
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe_fd = -1
        self._reader_on = False
        self._eof: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._owns_socket = False
        self._oversize = DatagramRejected(
            "oversize", f"larger than collectd.max_datagram_size = {cfg.max_datagram_size} bytes"
        )
        # day -> {raw datagram: [decoded, times seen]}, and day -> [first, last] receive time
        self._front: dict[str, dict[bytes, list[Any]]] = {}
        self._front_span: dict[str, list[float]] = {}
        self._where = ""

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
        self._buf.clear()

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
        self._buf += chunk
        self._consume()

    def _consume(self) -> None:
        buf = self._buf
        pos = 0
        end_of_data = len(buf)
        hsize = HEADER.size
        with memoryview(buf) as view:
            while end_of_data - pos >= hsize:
                kind, length, count, when, last = HEADER.unpack_from(view, pos)
                end = pos + hsize + length
                if end > end_of_data:
                    break
                day = self._day(when)
                if kind == KIND_BATCH:
                    self._batch(view, pos + hsize, count, day, (when, last))
                elif kind == KIND_DENIED:
                    self._denied(view, pos + hsize, count, day, last)
                elif kind == KIND_READY:
                    log.info("ready: receiving on %s", self._where)
                    _sd_notify(b"READY=1")
                elif kind == KIND_DROPPED:
                    self.agg.count(day, "received", count)
                    self.agg.count(day, _DROPPED_BACKLOG, count)
                    self.counters.received += count
                    self.counters.dropped["backlog-full"] += count
                    log.error(
                        "the receive process dropped %d datagrams: this process could not keep "
                        "up and its backlog reached collectd.max_backlog_bytes (%d)",
                        count,
                        self.cfg.max_backlog_bytes,
                    )
                pos = end
        del buf[:pos]

    def _day(self, when: float) -> str:
        number = int(when // 86400)
        if self._day_cache[0] != number:
            self._day_cache = (number, utc_day(when))
        return self._day_cache[1]

    def _batch(
        self, view: memoryview, pos: int, count: int, day: str, span: tuple[float, float]
    ) -> None:
        # Hot path: each entry is a distinct datagram with how often it arrived; identical
        # ones are only counted here and folded into the aggregate once per flush.
        first, last = span
        front = self._front.get(day)
        if front is None:
            front = self._front[day] = {}
            self._front_span[day] = [first, last]
        else:
            held = self._front_span[day]
            held[0] = min(held[0], first)
            held[1] = max(held[1], last)
        decode = self.decoder.decode
        unpack = ENTRY.unpack_from
        received = 0
        for _ in range(count):
            times, size = unpack(view, pos)
            pos += 8
            received += times
            if size & OVERSIZE_FLAG:
                self._reject(day, last, self._oversize, times)
                continue
            data = view[pos : pos + size].tobytes()
            pos += size
            entry = front.get(data)
            if entry is not None:
                entry[1] += times
                continue
            try:
                front[data] = [decode(data), times]
            except DatagramRejected as exc:
                self._reject(day, last, exc, times)
        self.counters.received += received
        if len(front) > _MAX_FRONT:
            self._fold_front()

    def _denied(self, view: memoryview, pos: int, count: int, day: str, when: float) -> None:
        # Datagrams the receive process did not hand over: they were received, and rejected.
        for _ in range(count):
            uid, gid, times = DENIED_ENTRY.unpack_from(view, pos)
            pos += DENIED_ENTRY.size
            self.counters.received += times
            if uid == UNKNOWN_ID and gid == UNKNOWN_ID:
                detail = "sender unknown (no credentials, or more distinct senders than tracked)"
            else:
                detail = (
                    f"uid {uid}, gid {gid} (neither is in collectd.allowed_users or "
                    "collectd.allowed_groups)"
                )
            exc = DatagramRejected(SENDER_NOT_ALLOWED, detail)
            self._reject(day, when, exc, times)

    def _fold_front(self) -> None:
        """Move the counted datagrams into the aggregate, where the memory bound applies."""
        agg = self.agg
        for day, front in self._front.items():
            first, last = self._front_span[day]
            for datagram, times in front.values():
                if agg.add(day, last, datagram, times, first_seen=first):
                    self.counters.accepted += times
                    if datagram.wire_form:
                        form = datagram.wire_form.removeprefix("wire-form:")
                        self.counters.forms[form] = self.counters.forms.get(form, 0) + times
                    continue
                self.counters.dropped["memory-full"] += times
                if self.limiter.allow(C_DROPPED_MEMORY, last) is not None:
                    log.error(
                        "memory bound reached: %d keys held (collectd.max_pending_keys) because "
                        "the database cannot be written; sessions for new domains/policies are "
                        "dropped",
                        len(agg),
                    )
        self._front = {}
        self._front_span = {}
        if (
            len(agg) >= _EARLY_FLUSH_KEYS
            and self.write_failing_since is None
            and self._wake is not None
        ):
            # Many new keys: write them now rather than hold two large aggregates (the one
            # being written and the one filling) in memory until the interval ends.
            self._wake.set()

    def _reject(self, day: str, when: float, exc: DatagramRejected, times: int = 1) -> None:
        self.agg.reject(day, exc.reason, times)
        rejected = self.counters.rejected
        rejected[exc.reason] = rejected.get(exc.reason, 0) + times
        suppressed = self.limiter.allow("rejected:" + exc.reason, when, times)
        if suppressed is not None:
            more = f" ({suppressed} more of this kind since the last report)" if suppressed else ""
            log.warning("rejected datagram: %s%s", exc, more)

    # --- database -------------------------------------------------------------------------

    async def _flush(self, db: aiosqlite.Connection) -> bool:
        """Write what is held; False (data kept in memory) when the database refused."""
        self._fold_front()
        received_before = self.counters.received
        if self.agg.is_empty():
            self.counters.written = received_before
            return True
        taken = self.agg.take()
        self.agg.reserved = len(taken)
        batch = store.build_batch(taken)
        started = time.monotonic()
        # While SQLite works in aiosqlite's thread, this thread must not compete for the GIL:
        # sqlite3 takes it back after every row, and against a busy decoder each take waits
        # a whole switch interval (measured: 16,620 keys took 3.9 s instead of 0.2 s). The
        # receive process buffers what arrives meanwhile.
        self._reading(False)
        try:
            await store_async.write(db, batch)
        except sqlite3.Error as exc:
            self.agg.reserved = 0
            self.agg.merge(taken)
            self.counters.flush_errors += 1
            now = time.time()
            if self.write_failing_since is None:
                self.write_failing_since = now
            if self.limiter.allow("db-write", now) is not None:
                log.error(
                    "CANNOT WRITE DATABASE %s: %s; holding %d keys in memory (limit %d, "
                    "collectd.max_pending_keys) and retrying every %.1f s",
                    self.cfg.db,
                    exc,
                    len(self.agg),
                    self.cfg.max_pending_keys,
                    self.cfg.flush_interval,
                )
            return False
        finally:
            self._reading(True)
        self.agg.reserved = 0
        elapsed = time.monotonic() - started
        self.counters.flushed(elapsed, time.time(), received_before)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("flushed %d keys in %.3f s (rss %s)", len(taken), elapsed, _rss())
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
        before = utc_day(time.time() - self.cfg.retention_days * 86400)
        try:
            await store_async.prune(db, before)
        except sqlite3.Error as exc:
            log.warning("retention: could not delete days before %s: %s", before, exc)

    async def _flush_loop(self, db: aiosqlite.Connection) -> None:
        assert self._wake is not None
        last_prune = time.monotonic()
        last_stats = time.monotonic()
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.cfg.flush_interval)
            if self.stopping:
                return
            self._wake.clear()
            await self._flush(db)
            now = time.monotonic()
            self._publish_metrics(now)
            if now - last_prune >= _PRUNE_EVERY:
                last_prune = now
                await self._prune(db)
            if now - last_stats >= _STATS_EVERY:
                last_stats = now
                log.info("totals since start: %s", self.counters.summary())

    # --- metrics file ---------------------------------------------------------------------

    def _publish_metrics(self, now: float) -> None:
        """Start rewriting ``metrics_file`` in a worker thread (at most once per interval).

        Never awaited here: a hung disk must not hold up the next flush. While a write is
        still running, newer counts wait for the next turn.
        """
        if not self.cfg.metrics_file or now - self._metrics_written_at < _METRICS_EVERY:
            return
        if self._metrics_writing is not None and not self._metrics_writing.done():
            return
        self._metrics_written_at = now
        content = metrics.text(self.counters, len(self.agg))
        self._metrics_writing = asyncio.create_task(self._write_metrics(content))

    async def _write_metrics(self, content: str) -> None:
        path = self.cfg.metrics_file
        try:
            await asyncio.to_thread(metrics.write_atomically, path, content)
        except OSError as exc:
            # Once per distinct problem (and an hourly reminder): never fatal, never a flood.
            problem = f"{exc.strerror or exc}"
            now = time.monotonic()
            if problem != self._metrics_error or now - self._metrics_error_at >= 3600:
                log.error(
                    "cannot write collectd.metrics_file %s: %s; collecting goes on, the "
                    "metrics are not updated until this is fixed",
                    path,
                    problem,
                )
                self._metrics_error, self._metrics_error_at = problem, now
            return
        if self._metrics_error:
            log.warning("collectd.metrics_file %s is written again", path)
            self._metrics_error = ""

    async def _write_metrics_last(self) -> None:
        """The final counts at shutdown, unless a write is still hanging."""
        if not self.cfg.metrics_file:
            return
        if self._metrics_writing is not None and not self._metrics_writing.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._metrics_writing), 5.0)
            if not self._metrics_writing.done():
                return
        await self._write_metrics(metrics.text(self.counters, len(self.agg)))

    # --- lifecycle ------------------------------------------------------------------------

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
            conn = store.connect(self.cfg.db)
            conn.close()
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
            _yield_to_receiver()
            self._reading(True)
            log.info(
                "listening on %s, writing to %s every %.1f s (queue length %s)",
                self._where,
                self.cfg.db,
                self.cfg.flush_interval,
                _qlen(),
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
                    len(self.agg),
                    self.cfg.db,
                )
                return 1
            await asyncio.sleep(min(1.0, self.cfg.flush_interval))
        await self._write_metrics_last()
        log.info("stopped: %s", self.counters.summary())
        return 0


def _sd_notify(message: bytes) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message, path)


def _yield_to_receiver() -> None:
    """Lower this process's CPU priority (every thread) below the receive process's.

    On a busy machine the receiver must get a core within milliseconds of a datagram's
    arrival (512 datagrams last 25 ms at 20,000/s); this process's work can wait, because the
    receiver buffers. Raising one's own niceness needs no privilege. A receive process started
    again later inherits the lower priority, which costs margin, not correctness.
    """
    with contextlib.suppress(OSError, ValueError):
        for tid in os.listdir("/proc/self/task"):
            os.setpriority(os.PRIO_PROCESS, int(tid), _DAEMON_NICENESS)


def _ids_text(ids: frozenset[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids)) or "(none)"


def _rss() -> str:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return "unknown"
    return status.split("VmRSS:")[1].split("\n")[0].strip()


def _qlen() -> str:
    try:
        return Path("/proc/sys/net/unix/max_dgram_qlen").read_text().strip()
    except OSError:
        return "unknown"


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
    try:
        cfg = load_config(args)
        senders = listener.resolve_senders(cfg)
    except (ConfigError, CollectorError) as exc:
        print(f"tlsrpt-collectd: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"tlsrpt-collectd: {config_check.collectd_verdict(cfg)}")
        return 0
    logs.setup("tlsrpt-collectd", cfg.log_level)
    try:
        return asyncio.run(Collector(cfg, senders).run())
    except CollectorError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
