"""The kernel process's garbage-collector settings (aikit_kernel/collector.py): what is alive once
the interpreter is built is frozen out of later collections, and full collections are spaced out
so that a heap of many agent runs is not traversed every 70,000 objects."""

from __future__ import annotations

import gc

from aikit_kernel.collector import MIDDLE_COLLECTIONS_PER_FULL, freeze_heap, space_full_collections


def test_full_collections_wait_for_more_middle_ones_and_the_young_thresholds_stay() -> None:
    before = gc.get_threshold()
    try:
        space_full_collections()
        assert gc.get_threshold() == (before[0], before[1], MIDDLE_COLLECTIONS_PER_FULL)
        assert before[2] < MIDDLE_COLLECTIONS_PER_FULL
    finally:
        gc.set_threshold(*before)


def test_frozen_objects_are_left_out_of_collections_and_garbage_is_collected_first() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    Node()  # garbage when the heap is frozen: collected, never frozen
    kept = [Node() for _ in range(100)]
    frozen_before = gc.get_freeze_count()
    try:
        freeze_heap(collect=True)
        assert gc.get_freeze_count() >= frozen_before + 100
        assert not any(type(o) is Node for o in gc.get_objects()), "frozen objects are not traversed any more"
    finally:
        gc.unfreeze()
    assert sum(type(o) is Node for o in gc.get_objects()) == len(kept)
