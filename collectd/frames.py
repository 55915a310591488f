"""The frames the receive process (:mod:`.receiver`) writes to the daemon (:mod:`.intake`).

Frames on the pipe (little-endian):
    header ``<BIIdd``: kind, payload length, entry count, first and last receive time
    kind 0 (batch): ``count`` entries, each ``<II`` (times received, length) + the datagram;
        a length with the top bit set stands for that many datagrams larger than the cap
        (no bytes follow); every entry was received on the UTC day of the frame's times.
        A frame holds at most 1 MiB of datagrams (or one larger datagram), so that the
        daemon never buffers more than that to take a frame whole.
    kind 2 (ready): the receive loop is running; sent once at start.
    kind 3 (denied): ``count`` entries, each ``<III`` (uid, gid, times): datagrams from senders
        that collectd.allowed_users/allowed_groups do not let in, not handed over; all were
        received on the UTC day of the frame's times. uid and gid 4294967295 stand for
        senders without credentials, or beyond the distinct senders held at once.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<BIIdd")
ENTRY = struct.Struct("<II")
DENIED_ENTRY = struct.Struct("<III")
KIND_BATCH = 0
# Kind 1 counted datagrams dropped at the byte cap; at the cap the receiver now stops reading.
KIND_READY = 2
KIND_DENIED = 3
OVERSIZE_FLAG = 0x8000_0000
# uid and gid of a sender without credentials (uid_t -1).
UNKNOWN_ID = 0xFFFF_FFFF
# Bytes of datagrams in one batch frame (a larger datagram travels alone).
FRAME_BYTES = 1 << 20
