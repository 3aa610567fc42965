"""The garbage collector's settings in a kernel process.

The collector holds the GIL while it runs, so every thread of the kernel (the Lua thread, the I/O
loop, the control thread) waits for it: what it traverses, and how often it traverses everything,
decides the kernel's longest pauses.
"""

from __future__ import annotations

import gc


def freeze_heap(collect: bool) -> None:
    """Exclude every object alive now (the modules, the interpreter, the components: hundreds of
    thousands) from later garbage collections. A full collection traverses them all, holding the
    GIL for 50-90 ms, which every thread of the kernel then waits for (a kernel_info on control
    during a run of a thousand agents); frozen, they are not traversed any more. ``collect``:
    collect the garbage first (cyclic garbage frozen is never freed; what is made at import
    time is a few objects at most)."""
    if collect:
        gc.collect()
    gc.freeze()


#: Full collections wait for this many collections of the middle generation (CPython's default:
#: 10). See :func:`space_full_collections`.
MIDDLE_COLLECTIONS_PER_FULL = 100


def space_full_collections() -> None:
    """Make full garbage collections rarer: one per :data:`MIDDLE_COLLECTIONS_PER_FULL` middle
    ones, about every 700,000 objects kept, instead of every 70,000. A full collection traverses
    every object alive and holds the GIL meanwhile: with a thousand agent runs going (~250,000
    objects), each took 140-230 ms, and there were five during the run, each holding up every
    thread of the kernel (a kernel_info on control, the replies of other runs). With this there
    were none during the run (gen 1 pauses stayed under 50 ms). What it costs: cyclic garbage that
    outlived two collections is freed later (11,000-16,000 objects in that run)."""
    first, second, _ = gc.get_threshold()
    gc.set_threshold(first, second, MIDDLE_COLLECTIONS_PER_FULL)
