"""Exception groups at the edges of our context managers.

trio wraps anything raised inside a nursery block in an ExceptionGroup. A context manager
that keeps a nursery open around its `yield` would therefore turn a caller's plain
`StanzaErrorReply` into a group and break every `except` the caller wrote. Like
trio-websocket, we hand back the single exception when there is exactly one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@contextmanager
def single_exception() -> Iterator[None]:
    """Re-raise a group holding exactly one exception as that exception."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:
            raise leaves[0] from leaves[0].__cause__
        raise
