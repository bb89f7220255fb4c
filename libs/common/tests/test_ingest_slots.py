"""The pure rules of ingest's slots: the topic deal, quotas, plans and deadlines."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from powerflow_common.formats.registry import FORMATS, default_topics
from powerflow_common.ingest_slots import (
    LeaseRecord,
    adoption_bound_s,
    assign_topics,
    balanced,
    decode_record,
    encode_record,
    hold_deadline,
    plan,
    quota,
    renew_interval_s,
    slot_client_ids,
    slot_of_key,
)
from powerflow_common.names import Names

DEFAULT_TOPICS = default_topics(tuple(FORMATS.values()))
filters = st.lists(st.text(alphabet="abcxyz/+#", min_size=1, max_size=12), min_size=0, max_size=30)
members = st.lists(st.text(alphabet="abcdef0123", min_size=1, max_size=6), min_size=1, max_size=8)


def test_slot_zero_is_the_single_client_id_of_before() -> None:
    assert slot_client_ids(Names(), 1) == ("powerflow-ingest-0",)
    assert slot_client_ids(Names("t1"), 3) == (
        "t1-powerflow-ingest-0",
        "t1-powerflow-ingest-1",
        "t1-powerflow-ingest-2",
    )


@given(filters, st.integers(min_value=1, max_value=20))
def test_every_filter_belongs_to_exactly_one_slot(topics: list[str], slots: int) -> None:
    deal = assign_topics(topics, slots)
    assert len(deal) == slots
    dealt = [t for share in deal for t in share]
    assert sorted(dealt) == sorted(set(topics))  # each once, none lost, none invented
    # The deal depends on the set of filters only: every instance computes the same one.
    assert assign_topics(reversed(topics + topics), slots) == deal
    sizes = [len(share) for share in deal]
    assert max(sizes) - min(sizes) <= 1  # balanced by count


def test_the_default_topics_and_the_legacy_topic() -> None:
    assert assign_topics(DEFAULT_TOPICS, 1) == (tuple(sorted(DEFAULT_TOPICS)),)
    deal = assign_topics(DEFAULT_TOPICS, 4)
    holding_legacy = [s for s, share in enumerate(deal) if "power/measurement" in share]
    assert len(holding_legacy) == 1
    assert all(len(share) == 2 for share in deal)  # 8 filters over 4 slots


@given(members, st.integers(min_value=1, max_value=64))
def test_quotas_add_up_to_k_and_none_exceeds_the_ceiling(ids: list[str], slots: int) -> None:
    live = sorted(set(ids))
    quotas = [quota(live, m, slots) for m in live]
    assert sum(quotas) == slots
    assert max(quotas) <= math.ceil(slots / len(live))
    assert min(quotas) >= slots // len(live)


def test_a_lone_instance_claims_every_slot_and_a_second_takes_half() -> None:
    free: dict[int, str | None] = dict.fromkeys(range(4))
    first = plan("a", ["a"], free, 4)
    assert sorted(first.claim) == [0, 1, 2, 3] and first.release == ()
    held = dict.fromkeys(range(4), "a")
    # b arrives: a's quota drops to 2 and it releases its highest slots; b finds none free.
    assert plan("a", ["a", "b"], held, 4).release == (3, 2)
    assert plan("b", ["a", "b"], held, 4).claim == ()
    after = {0: "a", 1: "a", 2: None, 3: None}
    assert sorted(plan("b", ["a", "b"], after, 4).claim) == [2, 3]


def test_a_plan_never_claims_a_held_slot() -> None:
    holders = {0: "a", 1: "b", 2: None}
    assert plan("c", ["c"], holders, 3).claim == (2,)  # alone by its reading: still only free


@given(members, st.integers(min_value=1, max_value=24), st.randoms(use_true_random=False))
def test_rounds_in_any_order_converge_on_a_balanced_share(
    ids: list[str], slots: int, rnd: object
) -> None:
    """Instances planning one after another against one table, each claim a compare-and-set
    (a held slot is never taken), end balanced within a few rounds, never double-held."""
    live = sorted(set(ids))
    table: dict[int, str | None] = dict.fromkeys(range(slots))
    order = list(live)
    for _ in range(4):
        rnd.shuffle(order)  # type: ignore[attr-defined]
        for me in order:
            todo = plan(me, live, dict(table), slots)
            for s in todo.release:
                assert table[s] == me
                table[s] = None
            for s in todo.claim:
                if table[s] is None:  # the compare-and-set
                    table[s] = me
    counts = [sum(1 for o in table.values() if o == m) for m in live]
    assert balanced(counts, slots), (table, counts)


def test_a_holder_lets_go_before_the_server_can_expire_its_lease() -> None:
    ttl = 10.0
    renewed_at = 100.0
    assert renewed_at < hold_deadline(renewed_at, ttl) < renewed_at + ttl
    # Three renewals may fail before the deadline passes.
    assert renewed_at + 3 * renew_interval_s(ttl) < hold_deadline(renewed_at, ttl)
    assert adoption_bound_s(ttl) == ttl + renew_interval_s(ttl)


def test_records_and_keys() -> None:
    record = LeaseRecord(owner="0-host-12-abc", renewed_at="2026-11-29T18:00:00.000+00:00")
    assert decode_record(encode_record(record)) == record
    assert decode_record(b"not json") is None
    assert decode_record(b'{"owner": 3}') is None
    assert slot_of_key("slot.12") == 12
    assert slot_of_key("member.x") is None
    assert slot_of_key("slot.x") is None
