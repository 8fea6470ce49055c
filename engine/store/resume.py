"""The resume rule, shared by trials and verdicts: what has a final status on record is kept; the
rest is done again, as the next attempt. A rerun therefore never repeats finished work."""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def still_to_do(items: Iterable[T], key: Callable[[T], str], statuses: dict[str, tuple[str, int]],
                final: Callable[[str], bool]) -> tuple[list[tuple[T, int]], int]:
    """(item, attempt) for every item whose recorded status (`statuses[key(item)]`: status, attempt)
    is missing or not `final`, in the items' order; and how many items are final already."""
    todo: list[tuple[T, int]] = []
    finished = 0
    for item in items:
        status, attempt = statuses.get(key(item), (None, 0))
        if status is not None and final(status):
            finished += 1
        else:
            todo.append((item, attempt + 1))
    return todo, finished
