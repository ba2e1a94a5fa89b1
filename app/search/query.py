"""A search as the server understands it: the typed request that app/search/service.py parses from a
URL's parameters and app/store/search.py runs."""
from collections.abc import Callable
from dataclasses import dataclass

from app.model.registry import resource_types
from app.search.criteria import Query


@dataclass(frozen=True)
class SortKey:
    code: str
    descending: bool


@dataclass(frozen=True)
class Include:
    source_type: str
    code: str  # "*" for every reference parameter of source_type
    target_type: str | None
    iterate: bool = False


@dataclass(frozen=True)
class Reach:
    """Part of a resource type that a caller may act on: one patient's compartment (None: every patient's) and, of
    those, the resources that `criteria` match (a SMART v2 scope's query; () for all)."""

    patient: str | None = None
    criteria: tuple[Query, ...] = ()


EVERYWHERE = (Reach(),)


@dataclass(frozen=True)
class SearchRequest:
    type: str | None  # None: a system-level search, over `types`
    criteria: tuple[Query, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 50
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    total: str | None = None
    cursor: dict | None = None
    types: tuple[str, ...] = ()  # a system-level search's _type list; () for every type
    # Type -> where the caller may search it (app/store/access.py), for the searched types and for those a chain or
    # _has looks at; None: everywhere.
    reach: Callable[[str], tuple[Reach, ...]] | None = None


def searched_types(request: SearchRequest) -> tuple[str, ...]:
    """The search's one type, a system-level search's _type list, or every served type."""
    if request.type is not None:
        return (request.type,)
    return request.types or tuple(sorted(resource_types()))
