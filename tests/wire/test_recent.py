"""Tests of the decoder's bounded caches (tlsrpt_reporter.wire.recent)."""

from __future__ import annotations

from tlsrpt_reporter.wire.recent import Recent


def one(_key: object) -> int:
    return 1


def test_what_is_used_survives_a_generation_turn_and_what_is_not_is_let_go() -> None:
    cache: Recent[str, int] = Recent(4, 1000, one)
    for key in "abcd":
        cache.put(key, ord(key))
    assert cache.get("a") == ord("a")  # young generation: a plain hit
    for key in "efgh":  # the young generation turns: a..d are old now, e..h young
        cache.put(key, ord(key))
    assert cache.get("b") == ord("b")  # brought back from the old generation
    for key in "ijkl":  # turns again: the old generation (c, d, ...) is let go
        cache.put(key, ord(key))
    assert cache.get("c") is None
    assert cache.get("b") == ord("b"), "b was used, so it survived the turn"


def test_it_never_holds_more_than_two_generations_of_entries_or_weight() -> None:
    cache: Recent[str, int] = Recent(8, 100, len)
    for n in range(1000):
        key = f"k{n}" * (n % 7 + 1)
        if cache.get(key) is None:
            cache.put(key, n)
        assert len(cache) <= 16
        assert sum(map(len, cache.young)) <= 100 + 7 * 5
        assert sum(map(len, cache.old)) <= 100 + 7 * 5


def test_an_adaptive_cache_grows_while_keys_recur_beyond_what_it_holds() -> None:
    cache: Recent[int, int] = Recent(4096, 1 << 30, one, min_entries=64)
    assert cache.limit == 64
    hits = 0
    for _ in range(6):  # 2,000 keys in turn: each recurs after 1,999 others
        for key in range(2000):
            if cache.get(key) is None:
                cache.put(key, key)
            else:
                hits += 1
    assert cache.limit >= 1024, "misses of keys seen lately must grow it"
    assert hits > 2000, "and once it holds the 2,000 keys, they hit"


def test_an_adaptive_cache_shrinks_back_when_nothing_recurs() -> None:
    cache: Recent[int, int] = Recent(4096, 1 << 30, one, min_entries=64)
    for _ in range(4):
        for key in range(3000):
            if cache.get(key) is None:
                cache.put(key, key)
    grown = cache.limit
    assert grown > 64
    for key in range(10_000, 200_000):  # a burst of keys never seen again
        assert cache.get(key) is None
        cache.put(key, key)
    assert cache.limit == 64
    assert len(cache) <= 2 * grown


def test_an_adaptive_cache_stays_small_when_every_key_is_new() -> None:
    cache: Recent[int, int] = Recent(4096, 1 << 30, one, min_entries=64)
    for key in range(100_000):
        assert cache.get(key) is None
        cache.put(key, key)
        assert len(cache) <= 128


def test_weight_shrinks_with_the_entries_of_an_adaptive_cache() -> None:
    # At a sixteenth of the entries it may hold a sixteenth of the weight: a burst of large
    # new entries cannot fill the full weight while the cache is small.
    cache: Recent[str, int] = Recent(1024, 16 * 1024, len, min_entries=64)
    for n in range(200):
        key = f"{n:08d}" * 32  # 256 characters
        cache.put(key, n)
        assert sum(map(len, cache.young)) <= 1024 + 256
