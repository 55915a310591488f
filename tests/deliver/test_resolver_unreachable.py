"""The resolver gives up on a resolver that does not answer (deliver.resolver): after
``UNREACHABLE_AFTER`` lookups in a row that reached no nameserver, it asks none until the next
pass; a server that answers, even SERVFAIL, keeps it asking. Against a real DNS server on
loopback that drops the questions it is told to."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from rigs.dnsserver import DnsServer

from tlsrpt_reporter.config.schema import DnsSettings
from tlsrpt_reporter.deliver.resolver import (
    UNREACHABLE_AFTER,
    DnsTemporaryError,
    DnsUnreachable,
    Resolver,
)

TIMEOUT = 0.5


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer({"answers.example": [("TXT", '"here"')]}) as srv:
        yield srv


@pytest.fixture
def resolver(server: DnsServer) -> Resolver:
    return Resolver(DnsSettings(nameservers=("127.0.0.1",), port=server.port, timeout=TIMEOUT))


def outcome(resolver: Resolver, name: str) -> str:
    """What a TXT lookup of ``name`` came to: "answer", "unreachable" or "temporary"."""
    try:
        asyncio.run(resolver.txt_records(name))
    except DnsUnreachable:
        return "unreachable"
    except DnsTemporaryError:
        return "temporary"
    return "answer"


def test_after_lookups_in_a_row_without_answer_no_server_is_asked_until_the_next_pass(
    server: DnsServer, resolver: Resolver
) -> None:
    names = [f"silent{n}.example" for n in range(UNREACHABLE_AFTER + 3)]
    server.drop = set(names)
    assert [outcome(resolver, name) for name in names] == ["unreachable"] * len(names)
    # (dnspython may send a question twice within its timeout: distinct names count)
    assert list(dict.fromkeys(q.name for q in server.queries)) == names[:UNREACHABLE_AFTER]
    assert resolver.unreachable.startswith(
        f"DNS is unreachable: {UNREACHABLE_AFTER} lookups in a row got no answer from "
        f"127.0.0.1 port {server.port}"
    )
    # Even a name that would answer is not asked any more in this pass...
    assert outcome(resolver, "answers.example") == "unreachable"
    assert not server.asked("answers.example")
    # ...and is in the next.
    resolver.new_pass()
    assert resolver.unreachable == ""
    assert outcome(resolver, "answers.example") == "answer"


def test_an_answer_between_unanswered_lookups_starts_the_count_again(
    server: DnsServer, resolver: Resolver
) -> None:
    server.drop = {"silent.example"}
    before = ["silent.example"] * (UNREACHABLE_AFTER - 1)
    for name in [*before, "answers.example", *before]:
        outcome(resolver, name)
    assert resolver.unreachable == ""
    assert len(server.queries) >= 2 * len(before) + 1  # every one asked


def test_servfail_is_an_answer_and_never_stops_the_lookups(
    server: DnsServer, resolver: Resolver
) -> None:
    names = [f"broken{n}.example" for n in range(UNREACHABLE_AFTER * 3)]
    server.servfail = set(names)
    assert [outcome(resolver, name) for name in names] == ["temporary"] * len(names)
    assert resolver.unreachable == ""
    assert {q.name for q in server.queries} == set(names)
