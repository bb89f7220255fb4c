"""Redelivered messages are handled in an order that lets a killer's neighbours by."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.consumers import redelivery_order

Item = tuple[int, int]  # (stream sequence, delivery count)


def position(item: Item) -> Item:
    return item


def test_by_sequence_on_an_even_delivery_and_reversed_on_an_odd_one() -> None:
    assert redelivery_order([(7, 2), (3, 2), (5, 2)], position) == [(3, 2), (5, 2), (7, 2)]
    assert redelivery_order([(7, 3), (3, 3), (5, 3)], position) == [(7, 3), (5, 3), (3, 3)]
    assert redelivery_order([], position) == []


def deliveries_until_stored(
    sequences: list[int], killer: int, first_delivery: int
) -> dict[int, int]:
    """Simulate a process that dies whenever it handles ``killer``: when is each other stored?"""
    held = dict.fromkeys(sequences, first_delivery)
    stored: dict[int, int] = {}
    for _ in range(len(sequences) + 2):
        for seq, delivered in redelivery_order(list(held.items()), position):
            if seq == killer:
                break  # the process dies; everything still held comes back, counted once more
            stored[seq] = delivered
            del held[seq]
        held = {seq: delivered + 1 for seq, delivered in held.items()}
        if list(held) == [killer]:
            break
    return stored


@settings(deadline=None)
@given(
    st.lists(st.integers(1, 10_000), min_size=1, max_size=60, unique=True),
    st.data(),
    st.integers(2, 8),
)
def test_a_neighbour_of_a_message_that_kills_the_process_is_stored_by_the_next_delivery(
    sequences: list[int], data: st.DataObject, first_delivery: int
) -> None:
    killer = data.draw(st.sampled_from(sequences))
    stored = deliveries_until_stored(sequences, killer, first_delivery)
    assert set(stored) == set(sequences) - {killer}
    assert all(delivered <= first_delivery + 1 for delivered in stored.values())


def test_one_killer_among_100_held_from_delivery_2_stores_the_99_by_delivery_3() -> None:
    stored = deliveries_until_stored(list(range(1, 101)), killer=40, first_delivery=2)
    assert sorted(stored) == [s for s in range(1, 101) if s != 40]
    assert {s: d for s, d in stored.items() if d == 2} == {s: 2 for s in range(1, 40)}
    assert all(stored[s] == 3 for s in range(41, 101))
