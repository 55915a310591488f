"""The ingest benchmark's constants, sizes, pre-generated datagrams and result records."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

from tlsrpt_reporter.demo import samplegen
from tlsrpt_reporter.wire.encode import datagram

BLAST_SEED = 8460
BLAST_DOMAINS = 5000
MEMORY_SEED = 2
FLUSH_INTERVAL = 1.0
POLL_EVERY = 0.2
# A count unchanged this long after the senders finished is final: longer than our flush
# interval and than sys4's idle commit (sockettimeout 1 s).
SETTLED_AFTER = 3.0
READY_TIMEOUT = 30.0
SEND_TIMEOUT = 10.0  # a blocking send stuck this long means the receiver is gone
STOP_TIMEOUT = 60.0
SETTLE_LIMIT = 180.0  # after the senders are done
RECV_SIZE = 262_145  # what the collector's receive process asks for: max_datagram_size + 1
TARGET_QLEN = 512
TARGET_BLAST_RATE = 50_000
TARGET_RSS_MIB = 100.0
CTX = mp.get_context("fork")

ALL_SCENARIOS = "blast,steady,memory,burst,bare,sys4"
DEFAULTS = {"count": 300_000, "rate": 20_000, "duration": 60.0, "memory_domains": 100_000}
QUICK = {"count": 20_000, "rate": 20_000, "duration": 5.0, "memory_domains": 10_000}


class BenchError(Exception):
    """A scenario could not be run (a process failed to start, died or hung)."""


@dataclass(frozen=True)
class Settings:
    """The sizes of one run, as resolved from the command line."""

    count: int
    rate: int
    duration: float
    memory_domains: int
    senders: int
    only: str = ALL_SCENARIOS

    def as_args(self) -> list[str]:
        """The command-line options that reproduce these settings."""
        return [
            f"--only={self.only}",
            f"--count={self.count}",
            f"--rate={self.rate}",
            f"--duration={self.duration}",
            f"--memory-domains={self.memory_domains}",
            f"--senders={self.senders}",
        ]


@dataclass(frozen=True)
class Data:
    """Pre-generated datagrams: the realistic mix, and one per distinct domain."""

    blast: list[bytes]
    distinct: list[bytes]

    @classmethod
    def generate(cls, settings: Settings) -> Data:
        """Build both sets, before anything is timed (samplegen is the slow part)."""
        blast = list(samplegen.sessions(BLAST_SEED, BLAST_DOMAINS, settings.count))
        rng = random.Random(MEMORY_SEED)
        distinct = []
        for index in range(settings.memory_domains):
            domain = samplegen.Domain(rng, index)
            policy = domain.policy(rng) | {"t": 0, "f": 0}
            distinct.append(datagram(domain.name, [policy], domain.record))
        return cls(blast, distinct)

    def save(self, path: Path) -> None:
        """Write the sets for a re-executed pass."""
        path.write_bytes(pickle.dumps((self.blast, self.distinct), pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: Path) -> Data:
        """Read what :meth:`save` wrote."""
        blast, distinct = pickle.loads(path.read_bytes())
        return cls(blast, distinct)


@dataclass
class Row:
    """One scenario's result. ``stored`` is what the bare loop received, for ``bare``.

    ``stored_rate``: stored over first send to final stored count (flush delay included);
    ``recv_rate``: stored over first send to the receive of the last datagram.
    """

    qlen: int
    scenario: str
    sent: int
    dropped: int
    stored: int
    stored_rate: float | None
    recv_rate: float | None
    rss_mib: float | None
    note: str = ""

    @property
    def loss(self) -> int:
        """Datagrams the kernel accepted but nobody stored (received, for bare)."""
        return self.sent - self.stored


@dataclass(frozen=True)
class Sends:
    """What the sender processes did; times are ``time.monotonic()`` (system-wide), except
    ``started_wall``, the first send in ``time.time()`` to compare with the collector's stamps."""

    sent: int
    dropped: int
    started: float
    finished: float
    started_wall: float


@dataclass(frozen=True)
class Outcome:
    """A collector run: what was sent, what it stored, when, and its memory."""

    sends: Sends
    stored: int
    elapsed: float
    rss_kib: dict[str, int]
    exit_code: int
    counters: dict[str, int]
    received_in: float | None  # first send to the collector's receive stamp of the last batch
