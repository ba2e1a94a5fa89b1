"""The entries of a transaction or batch Bundle, checked and parsed into the interaction each one asks for."""
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from app.config import PageSizes
from app.errors import BadRequest
from app.store.resources import StoredResource

BUNDLE_TYPES = ("transaction", "batch")
PROCESSING_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}  # http.html#trules

# (method, URL shape) -> FHIR interaction; in a shape each segment but `_history` reads `*`, and an operation's `$name` `$`.
# A conditional interaction (`PUT Patient?identifier=...`) becomes an instance one once its search
# has found the target (app/bundles/conditional.py); two more interactions exist only after that search:
# "create-matched" (ifNoneExist found the resource, nothing to create) and "delete-unmatched".
INTERACTIONS = {
    ("POST", ("*",)): "create",
    ("PUT", ("*", "*")): "update",
    ("PUT", ("*",)): "conditional-update",
    ("PATCH", ("*", "*")): "patch",
    ("PATCH", ("*",)): "conditional-patch",
    ("DELETE", ("*", "*")): "delete",
    ("DELETE", ("*",)): "conditional-delete",
    ("GET", ("*",)): "search-type",
    ("GET", ("*", "_history")): "history-type",
    ("GET", ("*", "*")): "read",
    ("GET", ("*", "*", "_history")): "history-instance",
    ("GET", ("*", "*", "_history", "*")): "vread",
}
# An operation at system, type or instance level, whatever the method: app/operations/registry.py says which it takes.
INTERACTIONS |= {(method, shape): "operation" for method in PROCESSING_ORDER for shape in (("$",), ("*", "$"), ("*", "*", "$"))}
EXPECTED_URLS = {
    "POST": "Type, or an operation: Type/$name or Type/id/$name",
    "PUT": "Type/id or Type?criteria",
    "PATCH": "Type/id or Type?criteria",
    "DELETE": "Type/id or Type?criteria",
    "GET": "Type, Type?_count=n, Type/_history, Type/id, Type/id/_history, Type/id/_history/version or an operation, Type[/id]/$name",
}
READ_INTERACTIONS = frozenset({"search-type", "history-type", "read", "history-instance", "vread", "operation"})  # no operation served writes
CONDITIONAL_INTERACTIONS = frozenset({"conditional-update", "conditional-patch", "conditional-delete"})
QUERY_INTERACTIONS = frozenset({"search-type", "history-type", "history-instance", "operation"}) | CONDITIONAL_INTERACTIONS


@dataclass(frozen=True)
class EntryRequest:
    """One entry's request.

    `criteria` is the search a conditional entry finds its resource by (ifNoneExist, or the query of a
    conditional PUT, PATCH or DELETE); `match` is the resource a conditional create found instead of creating;
    `assigned_id` is the id given to a created resource up front, so that references to it resolve.
    """

    index: int
    label: str
    method: str
    interaction: str
    path: tuple[str, ...]
    query: tuple[tuple[str, str], ...]
    resource: object = None
    full_url: str | None = None
    if_match: str | None = None
    criteria: str | None = None
    match: StoredResource | None = None
    assigned_id: str | None = None
    page_sizes: PageSizes = PageSizes()  # of a GET search or history entry: the server's configured ones

    @property
    def type(self) -> str:
        return self.path[0]

    @property
    def id(self) -> str | None:
        return self.path[1] if len(self.path) > 1 and self.path[1] != "_history" else None

    @property
    def written_resource(self) -> str | None:
        """The Type/id this entry changes, if it writes and its id is known."""
        if self.interaction == "create":
            return f"{self.type}/{self.assigned_id}" if self.assigned_id else None
        return f"{self.type}/{self.id}" if self.interaction in ("update", "patch", "delete") else None

    @property
    def resolved_resource(self) -> str | None:
        """The Type/id that references to this entry (by fullUrl or by its criteria) mean, if it creates or updates one."""
        if self.interaction == "create-matched":
            return f"{self.match.type}/{self.match.id}"
        return self.written_resource if self.interaction in ("create", "update") else None

    def url_under(self, base: str) -> str:
        url = f"{base}/{'/'.join(self.path)}"
        return f"{url}?{urlencode(self.query)}" if self.query else url


def bundle_entries(bundle) -> list:
    """The entries of a transaction or batch Bundle, after checking the Bundle's own structure."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        found = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise BadRequest(f"Expected a Bundle of type transaction or batch, got {found!r}.")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise BadRequest(f"Bundle.type is {bundle.get('type')!r}; only 'transaction' and 'batch' Bundles can be processed.")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be an array of entries.")
    return entries


def entry_label(index: int, entry) -> str:
    """How errors name an entry: `Bundle.entry[3] (PUT Patient/x)`, or `Bundle.entry[3]` if it has no request line."""
    request = entry.get("request") if isinstance(entry, dict) else None
    if isinstance(request, dict) and isinstance(request.get("method"), str) and isinstance(request.get("url"), str):
        return f"Bundle.entry[{index}] ({request['method']} {request['url']})"
    return f"Bundle.entry[{index}]"


def parse_entry(index: int, entry, base: str, page_sizes: PageSizes) -> EntryRequest:
    request = entry.get("request") if isinstance(entry, dict) else None
    if not isinstance(request, dict):
        raise BadRequest("The entry has no request; every entry of a transaction or batch needs request.method and request.url.")
    method, url = request_line(request)
    path, query = split_url(url, base)
    interaction = interaction_of(method, path, query)
    return EntryRequest(
        index, entry_label(index, entry), method, interaction, path, query,
        resource=entry.get("resource"), full_url=optional_string(entry, "fullUrl"), if_match=optional_string(request, "ifMatch"),
        criteria=entry_criteria(request, interaction, path[0], url), page_sizes=page_sizes,
    )


def request_line(request: dict) -> tuple[str, str]:
    method, url = request.get("method"), request.get("url")
    if not isinstance(method, str) or method not in PROCESSING_ORDER:
        raise BadRequest(f"request.method {method!r} is not one of {', '.join(PROCESSING_ORDER)}.")
    if not isinstance(url, str) or not url.strip():
        raise BadRequest("request.url is missing; it names the target relative to the server's base, e.g. 'Patient/123'.")
    return method, url


def optional_string(element: dict, name: str) -> str | None:
    value = element.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, got {value!r}.")
    return value


def entry_criteria(request: dict, interaction: str, type_name: str, url: str) -> str | None:
    """The search a conditional entry finds its resource by: request.ifNoneExist of a create, else the URL's query."""
    if interaction in CONDITIONAL_INTERACTIONS:
        return url.partition("?")[2]
    if_none_exist = optional_string(request, "ifNoneExist")
    if if_none_exist is None:
        return None
    if interaction != "create":
        raise BadRequest("request.ifNoneExist makes a create conditional; it only applies to POST entries.")
    return if_none_exist.removeprefix(f"{type_name}?")  # some clients send the whole search URL


def split_url(url: str, base: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Path segments and query of a request.url, which may also be absolute under the server's base."""
    path, _, query = url.strip().removeprefix(base).strip("/").partition("?")
    segments = tuple(path.split("/"))
    if "" in segments:
        raise BadRequest(f"request.url '{url}' does not name a resource type; it should look like 'Patient' or 'Patient/123'.")
    return segments, tuple(parse_qsl(query, keep_blank_values=True))


def interaction_of(method: str, path: tuple[str, ...], query: tuple) -> str:
    shape = tuple(segment if segment == "_history" else "$" if segment.startswith("$") else "*" for segment in path)
    read_method = "GET" if method == "HEAD" else method
    interaction = INTERACTIONS.get((read_method, shape))
    if interaction is None or (query and interaction not in QUERY_INTERACTIONS) or (interaction in CONDITIONAL_INTERACTIONS and not query):
        raise BadRequest(f"request.url '{'/'.join(path)}' is not a {method} this server supports; use {EXPECTED_URLS[read_method]}.")
    return interaction


def in_processing_order(requests: list[EntryRequest]) -> list[EntryRequest]:
    return sorted(requests, key=lambda request: PROCESSING_ORDER[request.method])
