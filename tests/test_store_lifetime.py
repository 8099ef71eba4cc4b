"""The token store's session lifetime, cap, last use, and records written by an earlier version."""

from __future__ import annotations

import json
import threading
import time

import pytest

from signin.store.tokens import RefreshRejected, TokenStore, digest, session_ref
from signin.store.tokens.records import Session, index_member
from tests.conftest import Clock, stored_value

DAY = 86400


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_session_ends_at_its_maximum_age_however_often_refreshed(redis, prefix, clock):
    store = TokenStore(redis, prefix=prefix, access_ttl=DAY, refresh_ttl=DAY, max_age=3 * DAY, clock=clock)
    issued = store.issue(1, "u", "signin", "read")
    assert issued.expires_in == DAY

    token = issued.refresh_token
    for _ in range(4):  # refreshed every half day...
        clock.now += DAY // 2
        token = store.rotate(token).refresh_token
    clock.now += DAY // 2 - 1
    near_the_cap = store.rotate(token)

    # ...the last pair lives only until three days after the sign-in.
    assert near_the_cap.expires_in == DAY // 2 + 1
    assert near_the_cap.session.expires_at == issued.session.created_at + 3 * DAY
    key = f"{prefix}s:{issued.session.ref}"
    assert redis.ttl(key) == DAY // 2 + 1
    clock.now += DAY // 2 + 1
    assert store.resolve(near_the_cap.access_token) is None
    with pytest.raises(RefreshRejected) as refused:
        store.rotate(near_the_cap.refresh_token)
    assert refused.value.reason == "unknown"


def test_a_maximum_age_of_zero_lets_refreshes_go_on(redis, prefix, clock):
    store = TokenStore(redis, prefix=prefix, access_ttl=DAY, refresh_ttl=DAY, max_age=0, clock=clock)
    token = store.issue(1, "u", "signin", "read").refresh_token
    for _ in range(10):
        clock.now += DAY - 1
        rotated = store.rotate(token)
        token = rotated.refresh_token

    assert rotated.expires_in == DAY


def test_a_session_not_refreshed_within_the_refresh_lifetime_ends(redis, prefix, clock):
    store = TokenStore(redis, prefix=prefix, access_ttl=600, refresh_ttl=DAY, clock=clock)
    issued = store.issue(1, "u", "signin", "read")
    clock.now += DAY

    with pytest.raises(RefreshRejected):
        store.rotate(issued.refresh_token)
    assert store.sessions(1) == []


def test_a_sign_in_beyond_the_cap_ends_the_oldest_session(redis, prefix, clock):
    store = TokenStore(redis, prefix=prefix, max_sessions=2, clock=clock)
    oldest = store.issue(1, "u", "signin", "read")
    clock.now += 1
    middle = store.issue(1, "u", "signin", "read")
    clock.now += 1
    store.rotate(oldest.refresh_token)  # a refresh does not make a session younger

    clock.now += 1
    newest = store.issue(1, "u", "signin", "read")

    assert newest.evicted == [oldest.session.public_id]
    assert store.resolve(oldest.access_token) is None
    assert [s.ref for s in store.sessions(1)] == [newest.session.ref, middle.session.ref]
    assert redis.zcard(f"{prefix}u:1") == 2


def test_a_session_whose_key_expired_before_its_index_entry_does_not_count_towards_the_cap(redis, prefix):
    step = DAY // 8  # an index entry's score is its key's expiry rounded up to this
    clock = Clock(int(time.time()) // step * step + 1)
    store = TokenStore(redis, prefix=prefix, access_ttl=DAY, refresh_ttl=DAY, max_sessions=2, clock=clock)
    busy = store.issue(1, "u", "signin", "read")
    clock.now += 1
    idle = store.issue(1, "u", "signin", "read")
    clock.now += DAY - 10
    busy = store.rotate(busy.refresh_token)
    clock.now += 12
    redis.delete(f"{prefix}s:{idle.session.ref}")  # as Redis expires it: its index entry lives on a while

    newest = store.issue(1, "u", "signin", "read")

    assert newest.evicted == []
    assert store.resolve(busy.access_token) == busy.session
    assert [s.ref for s in store.sessions(1)] == [newest.session.ref, busy.session.ref]
    assert redis.zrange(f"{prefix}u:1", 0, -1) == [busy.session.member, newest.session.member]


def test_eight_concurrent_sign_ins_leave_exactly_the_cap(redis, prefix):
    store = TokenStore(redis, prefix=prefix, max_sessions=3)
    issued: list = []
    barrier = threading.Barrier(8)

    def sign_in() -> None:
        barrier.wait()
        issued.append(store.issue(1, "u", "signin", "read"))

    threads = [threading.Thread(target=sign_in) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    live = [i for i in issued if store.resolve(i.access_token) is not None]
    assert len(live) == 3
    assert store.session_count(1) == 3
    assert sum(len(i.evicted) for i in issued) == 5
    assert redis.zcard(f"{prefix}u:1") == 3


def test_an_eviction_cut_short_is_finished_by_the_next_sign_in(redis, prefix, clock):
    # A process that marked a session for eviction, then died before ending it.
    store = TokenStore(redis, prefix=prefix, max_sessions=5, clock=clock)
    doomed = store.issue(1, "u", "signin", "read")
    redis.zadd(f"{prefix}u:1", {doomed.session.member: -1})

    assert [s.ref for s in store.sessions(1)] == []  # no longer counted or listed...
    assert store.revoke_user(1) == 1  # ...but still found by signout-everywhere
    doomed = store.issue(1, "u", "signin", "read")
    redis.zadd(f"{prefix}u:1", {doomed.session.member: -1})
    clock.now += 1

    later = store.issue(1, "u", "signin", "read")

    assert later.evicted == [doomed.session.public_id]
    assert store.resolve(doomed.access_token) is None


def test_last_use_is_written_at_most_once_per_touch_interval(redis, prefix, clock):
    store = TokenStore(redis, prefix=prefix, touch_seconds=300, clock=clock)
    issued = store.issue(1, "u", "signin", "read")
    key = f"{prefix}s:{issued.session.ref}"
    written = stored_value(redis, key)

    clock.now += 299
    assert store.resolve(issued.access_token).last_used_at == issued.session.created_at
    assert stored_value(redis, key) == written  # not written: the check stayed one GET
    clock.now += 1
    store.resolve(issued.access_token)
    store.resolve_any(issued.access_token)

    stored = Session.load(issued.session.ref, stored_value(redis, key))
    assert stored.last_used_at == issued.session.created_at + 300
    assert stored._replace(used_after_issue=0) == issued.session
    assert 0 < redis.ttl(key) <= 604800


def test_the_record_keeps_address_and_user_agent_cut_to_200(redis, prefix):
    store = TokenStore(redis, prefix=prefix)
    issued = store.issue(1, "u", "signin", "read", address="2001:db8::1", user_agent="x" * 300)

    rotated = store.rotate(issued.refresh_token).session

    assert (rotated.address, rotated.user_agent) == ("2001:db8::1", "x" * 200)


def test_records_and_index_entries_of_an_earlier_version_keep_working(redis, prefix, clock):
    store = TokenStore(redis, prefix=prefix, clock=clock)
    selector, access, refresh = "s" * 22, "a" * 43, "r" * 43
    ref, now = session_ref(selector), int(clock.now)
    old = [7, "u", "signin", "read", now, now + 604800, digest(access), digest(refresh)]
    redis.set(f"{prefix}s:{ref}", json.dumps(old), ex=604800)
    redis.zadd(f"{prefix}u:7", {ref: now + 604800})

    assert store.resolve(f"{selector}.{access}").created_at == now
    assert [s.ref for s in store.sessions(7)] == [ref]
    rotated = store.rotate(f"{selector}.{refresh}")
    assert store.resolve(rotated.access_token).previous_refresh_digest == digest(refresh)
    assert store.revoke_user(7) == 1
    assert redis.exists(f"{prefix}s:{ref}", f"{prefix}u:7") == 0


def test_json_records_of_the_version_before_keep_working_and_are_rewritten_as_messagepack(redis, prefix, clock):
    store = TokenStore(redis, prefix=prefix, clock=clock, touch_seconds=300)
    selector, access, refresh = "s" * 22, "a" * 43, "r" * 43
    ref, now = session_ref(selector), int(clock.now)
    key = f"{prefix}s:{ref}"
    old = [
        7,
        "u",
        "signin",
        "read",
        now,
        604800,
        digest(access),
        digest(refresh),
        0,
        0,
        "192.0.2.1",
        "Lynx/2.9 (Zürich)",
    ]
    redis.set(key, json.dumps(old, separators=(",", ":"), ensure_ascii=False), ex=604800)
    redis.zadd(f"{prefix}u:7", {index_member(now, ref): now + 604800})
    expected = Session(ref, *old)

    assert store.resolve(f"{selector}.{access}") == expected
    assert store.sessions(7) == [expected]
    clock.now += 300
    assert store.resolve(f"{selector}.{access}") == expected  # its use noted by a script that rewrites it
    assert stored_value(redis, key) == expected._replace(used_after_issue=300).dump()
    rotated = store.rotate(f"{selector}.{refresh}")
    assert stored_value(redis, key) == rotated.session.dump()
    assert rotated.session.user_agent == "Lynx/2.9 (Zürich)"
    assert store.revoke_user(7) == 1


def test_an_index_member_sorts_by_sign_in_time():
    assert index_member(0x10, "A" * 16) < index_member(0x100, "0" * 16)
    assert index_member(1764601234, "r" * 16) == "692dad92" + "r" * 16
