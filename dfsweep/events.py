"""Events a run emits at the points it can be stopped and resumed from, for whoever waits on them.

Emitted by the driver only (never inside a Ray task or trial):
- `detected`   prepare: one more batch of face detections is on disk as a detections part (`rows`: so far in all);
- `checkpoint` sweep: Tune registered a trial's epoch checkpoint (`trial`, `epoch`): it is whole under tune/, what
  a resumed trial starts from (emitted at the end of the Tune step that registered it);
- `trial_done` sweep: a trial ended (`trial`, `status`: TERMINATED or ERROR).

In the same process, `listening(fn)` calls fn(event) for each. For another process (a test that kills this one at
a given point), `DFSWEEP_EVENTS=PATH` writes each event to PATH as one JSON line, a FIFO the waiter reads, so
nothing waits on timing. Events are off unless one of the two is used.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Callable, Iterator

ENV = "DFSWEEP_EVENTS"

Listener = Callable[[dict], None]
_listeners: list[Listener] = []
_sink: dict = {}  # path -> open file descriptor, or None once writing to it failed (the reader went away)


def emit(name: str, **fields) -> None:
    event = {"event": name, **fields}
    for fn in list(_listeners):
        fn(event)
    path = os.environ.get(ENV)
    if path:
        _write(path, event)


def _write(path: str, event: dict) -> None:
    if path not in _sink:
        try:  # a FIFO: blocks until its reader opens it
            _sink[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            _sink[path] = None
    fd = _sink[path]
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())  # one write, under PIPE_BUF: whole lines only
    except OSError:  # the reader closed the FIFO: stop writing, the run goes on
        os.close(fd)
        _sink[path] = None


@contextmanager
def listening(fn: Listener) -> Iterator[None]:
    """Call fn(event) for every event emitted in this process while the block runs."""
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)
