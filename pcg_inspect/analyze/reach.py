"""Which user lines Dynamo reached: every frame of every captured node's stack, every break's stack.

An eager observation at a line outside this set speaks for code the engine's trace never saw
(a frame abandoned at a fatal break); one inside it is already covered by the graph or a break.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..frames import stack_locations


def reached_lines(graphs: Sequence[Any], breaks: Sequence[Any]) -> set[tuple[str, int]]:
    """(file, line) of every frame Dynamo traced through."""
    seen: set[tuple[str, int]] = set()
    for g in graphs:
        for node in g.gm.graph.nodes:
            seen.update(stack_locations(node.meta.get("stack_trace") or ""))
    for b in breaks:
        seen.update((f.file, f.line) for f in b.user_stack)
    return seen
