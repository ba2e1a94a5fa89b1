"""Group commit: concurrent units of work whose only writes are creates share one statement and one commit.

On PostgreSQL a REST create is one statement that commits by itself (app/store/postgresql_writes.py). Most of what
PostgreSQL spends on it is what any statement costs whatever its size: planning the CTE, starting its executor,
committing. Measured in-process, 1.1 ms of PostgreSQL CPU per create written alone, 0.35 ms per create written eight
to a statement. So a unit that reaches its commit with nothing but creates joins its engine's group: the first unit
in line writes, on its own connection, its creates and those of the units that lined up while the previous shared
statement ran. With nobody writing, a unit writes at once and alone: an idle server adds no wait, and a busy one
shares without waiting on a timer.

Each unit's creates still stand alone: they are written only if that unit's targets are all live (the statement
checks them per unit), and if a shared statement fails, each unit's creates are written again alone, so that one
unit's failure never becomes another's.
"""
import threading
from collections.abc import Callable
from weakref import WeakKeyDictionary

from sqlalchemy import Connection
from sqlalchemy.pool import Pool

# At most this many versions in one shared statement (as many as one unit writes in one statement).
MOST_VERSIONS = 100


class Turn:
    """One unit's creates in line; `outcome` once written (what the write returned for it), or `error`."""

    def __init__(self, creates, size: int):
        self.creates = creates
        self.size = size
        self.done = False
        self.outcome = None
        self.error: BaseException | None = None

    def finish(self, outcome) -> None:
        self.outcome, self.done = outcome, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True

    def result(self):
        if self.error is not None:
            raise self.error
        return self.outcome


class Group:
    """The line of one engine's units (one pool of connections) in this process."""

    def __init__(self):
        self.changed = threading.Condition()
        self.line: list[Turn] = []
        self.writing = False

    def write(self, connection: Connection, creates, size: int, write: Callable):
        """`write(connection, [creates, ...])` -> one outcome per creates, for these creates and those of the units
        lined up behind them; this unit's outcome, or its error raised."""
        turn = Turn(creates, size)
        with self.changed:
            self.line.append(turn)
            while not turn.done and (self.writing or self.line[0] is not turn):
                self.changed.wait()
            if turn.done:
                return turn.result()
            shared = self.take_shared()
            self.writing = True
        try:
            written(connection, shared, write)
        finally:
            with self.changed:
                for unfinished in (turn for turn in shared if not turn.done):
                    unfinished.fail(RuntimeError("The shared write was interrupted; nothing of this unit was written."))
                self.writing = False
                self.changed.notify_all()
        return turn.result()

    def take_shared(self) -> list[Turn]:
        """The first units in line, up to MOST_VERSIONS versions (always the first)."""
        shared, size = [self.line[0]], self.line[0].size
        for turn in self.line[1:]:
            if size + turn.size > MOST_VERSIONS:
                break
            shared.append(turn)
            size += turn.size
        del self.line[:len(shared)]
        return shared


def written(connection: Connection, shared: list[Turn], write: Callable) -> None:
    """Write the shared creates in one statement; if it fails, each unit's alone, each with its own outcome."""
    try:
        outcomes = write(connection, [turn.creates for turn in shared])
    except Exception as error:  # noqa: BLE001 - answered per unit below
        if len(shared) == 1:
            shared[0].fail(error)
            return
        for turn in shared:
            written(connection, [turn], write)
        return
    for turn, outcome in zip(shared, outcomes):
        turn.finish(outcome)


GROUPS: WeakKeyDictionary[Pool, Group] = WeakKeyDictionary()
GROUPS_CHANGED = threading.Lock()


def group_of(connection: Connection) -> Group:
    """The group of the pool `connection` came from: units on the same database, whatever their execution options."""
    pool = connection.engine.pool
    with GROUPS_CHANGED:
        group = GROUPS.get(pool)
        if group is None:  # made once per pool: setdefault would build a Group (and its Condition) per create
            group = GROUPS[pool] = Group()
        return group
