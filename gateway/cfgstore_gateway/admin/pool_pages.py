"""One page of a provider pool for the console: search, health filter, sort, paging.

:func:`parse_page_query` turns ``?q=&health=&sort=&order=&page=&per_page=`` into a
:class:`PageQuery` or raises ``400`` naming every bad parameter (nothing is guessed).
:func:`select_page` applies it to a type's nodes (read-only; the nodes are not copied):

* ``q``: case-insensitive substring of the node's uuid, ``customName`` or last error
  message (at most :data:`MAX_QUERY_CHARS` characters; empty: every node);
* ``health``: ``all`` (default), ``healthy``, ``unhealthy`` or ``disabled`` (a disabled
  node is ``disabled`` whatever its health, as the console shows it);
* ``sort``: empty (default, the pool's own order, the one selection walks) or one of
  :data:`SORT_KEYS`; ``order`` ``asc`` (default) or ``desc``; ties keep the pool's order;
  a missing value (no name, never used) sorts first ascending;
* ``page`` (from 1) and ``per_page`` (1 to :data:`MAX_PER_PAGE`, default
  :data:`DEFAULT_PER_PAGE`); a page past the last answers the last one (the page actually
  served is in the answer), so deleting the last node of the last page shows the page
  before instead of an empty table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.admin.http import invalid

Health = Literal["healthy", "unhealthy", "disabled"]
HEALTH_FILTERS = ("all", "healthy", "unhealthy", "disabled")
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_QUERY_CHARS = 200


def health_of(node: ProviderNode) -> Health:
    """The console's word for a node: ``disabled`` first, then ``unhealthy``/``healthy``."""
    if node.state.is_disabled:
        return "disabled"
    return "healthy" if node.state.is_healthy else "unhealthy"


_HEALTH_RANK = {"healthy": 0, "unhealthy": 1, "disabled": 2}


def _optional_text(value: str | None) -> tuple[bool, str]:
    return (value is not None, value.casefold() if value is not None else "")


SORT_KEYS: Mapping[str, Callable[[ProviderNode], Any]] = {
    "name": lambda n: _optional_text(n.custom_name),
    "uuid": lambda n: n.uuid,
    "health": lambda n: _HEALTH_RANK[health_of(n)],
    "usageCount": lambda n: n.state.usage_count,
    "errorCount": lambda n: n.state.error_count,
    "lastUsed": lambda n: _optional_text(n.state.last_used),
    "lastErrorTime": lambda n: _optional_text(n.state.last_error_time),
}
"""The columns a page may be sorted by (JSON names of the node fields, ``name`` for
``customName``, ``health`` in the order healthy, unhealthy, disabled)."""


@attrs.frozen
class PageQuery:
    q: str = ""
    health: str = "all"
    sort: str = ""
    order: str = "asc"
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def to_json(self) -> dict[str, Any]:
        return {"q": self.q, "health": self.health, "sort": self.sort, "order": self.order}


@attrs.frozen
class Page:
    """The nodes of one page and what the console shows around them."""

    nodes: list[ProviderNode]
    page: int
    pages: int
    matched: int
    """Nodes passing the search and the filter (every page)."""
    counts: dict[str, int]
    """The whole type's nodes by health (``healthy``, ``unhealthy``, ``disabled``)."""


def parse_page_query(params: Mapping[str, str]) -> PageQuery:
    """The query of ``params`` (the request's query string); ``400`` naming every field
    that is wrong."""
    fields: dict[str, str] = {}
    q = params.get("q", "").strip()
    if len(q) > MAX_QUERY_CHARS:
        fields["q"] = f"at most {MAX_QUERY_CHARS} characters"
    health = params.get("health", "") or "all"
    if health not in HEALTH_FILTERS:
        fields["health"] = f"expected one of {', '.join(HEALTH_FILTERS)}"
    sort = params.get("sort", "")
    if sort and sort not in SORT_KEYS:
        fields["sort"] = f"expected one of {', '.join(SORT_KEYS)} (or empty: pool order)"
    order = params.get("order", "") or "asc"
    if order not in ("asc", "desc"):
        fields["order"] = "expected asc or desc"
    page = _integer(params, "page", 1, 1, None, fields)
    per_page = _integer(params, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE, fields)
    if fields:
        raise invalid(fields, "Invalid pool query")
    return PageQuery(q, health, sort, order, page, per_page)


def _integer(
    params: Mapping[str, str],
    name: str,
    default: int,
    low: int,
    high: int | None,
    fields: dict[str, str],
) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 9 or not (low <= int(raw) <= (high or 10**9)):
        upper = f" to {high}" if high is not None else " or more"
        fields[name] = f"expected a whole number from {low}{upper}"
        return default
    return int(raw)


def select_page(nodes: Sequence[ProviderNode], query: PageQuery) -> Page:
    """``query`` applied to ``nodes`` (see the module docstring)."""
    counts = {"healthy": 0, "unhealthy": 0, "disabled": 0}
    for node in nodes:
        counts[health_of(node)] += 1
    needle = query.q.casefold()
    matching = [
        n
        for n in nodes
        if (query.health == "all" or health_of(n) == query.health)
        and (not needle or _matches(n, needle))
    ]
    if query.sort:
        matching.sort(key=SORT_KEYS[query.sort], reverse=query.order == "desc")
    elif query.order == "desc":
        matching.reverse()
    pages = max(1, -(-len(matching) // query.per_page))
    page = min(query.page, pages)
    start = (page - 1) * query.per_page
    return Page(matching[start : start + query.per_page], page, pages, len(matching), counts)


def _matches(node: ProviderNode, needle: str) -> bool:
    texts = (node.uuid, node.custom_name, node.state.last_error_message)
    return any(text is not None and needle in text.casefold() for text in texts)
