"""The entries of a transaction or batch Bundle, checked and parsed into the interaction each one asks for."""
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from app.errors import BadRequest, NotSupported

BUNDLE_TYPES = ("transaction", "batch")
PROCESSING_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}  # http.html#trules

# (method, URL shape) -> FHIR interaction; in a shape each segment but `_history` reads `*`.
INTERACTIONS = {
    ("POST", ("*",)): "create",
    ("PUT", ("*", "*")): "update",
    ("PATCH", ("*", "*")): "patch",
    ("DELETE", ("*", "*")): "delete",
    ("GET", ("*",)): "search-type",
    ("GET", ("*", "_history")): "history-type",
    ("GET", ("*", "*")): "read",
    ("GET", ("*", "*", "_history")): "history-instance",
    ("GET", ("*", "*", "_history", "*")): "vread",
}
EXPECTED_URLS = {
    "POST": "Type",
    "PUT": "Type/id",
    "PATCH": "Type/id",
    "DELETE": "Type/id",
    "GET": "Type, Type?_count=n, Type/_history, Type/id, Type/id/_history or Type/id/_history/version",
}
READ_INTERACTIONS = frozenset({"search-type", "history-type", "read", "history-instance", "vread"})
QUERY_INTERACTIONS = frozenset({"search-type", "history-type", "history-instance"})


@dataclass(frozen=True)
class EntryRequest:
    """One entry's request; `assigned_id` is the id a transaction gives a created resource up front."""

    index: int
    label: str
    method: str
    interaction: str
    path: tuple[str, ...]
    query: tuple[tuple[str, str], ...]
    resource: object = None
    full_url: str | None = None
    if_match: str | None = None
    assigned_id: str | None = None

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


def parse_entry(index: int, entry, base: str) -> EntryRequest:
    request = entry.get("request") if isinstance(entry, dict) else None
    if not isinstance(request, dict):
        raise BadRequest("The entry has no request; every entry of a transaction or batch needs request.method and request.url.")
    method, url = request_line(request)
    if request.get("ifNoneExist") is not None:
        raise NotSupported(
            "Conditional create (request.ifNoneExist) in transactions and batches is not supported yet: "
            "this server does not serve search parameters yet."
        )
    path, query = split_url(url, base)
    return EntryRequest(
        index, entry_label(index, entry), method, interaction_of(method, path, query), path, query,
        resource=entry.get("resource"), full_url=optional_string(entry, "fullUrl"), if_match=optional_string(request, "ifMatch"),
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


def split_url(url: str, base: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Path segments and query of a request.url, which may also be absolute under the server's base."""
    path, _, query = url.strip().removeprefix(base).strip("/").partition("?")
    segments = tuple(path.split("/"))
    if "" in segments:
        raise BadRequest(f"request.url '{url}' does not name a resource type; it should look like 'Patient' or 'Patient/123'.")
    return segments, tuple(parse_qsl(query, keep_blank_values=True))


def interaction_of(method: str, path: tuple[str, ...], query: tuple) -> str:
    if query and method in ("PUT", "PATCH", "DELETE"):
        raise NotSupported(
            f"Conditional {method} (a search URL in request.url) is not supported yet: this server does not serve search parameters yet."
        )
    shape = tuple(segment if segment == "_history" else "*" for segment in path)
    read_method = "GET" if method == "HEAD" else method
    interaction = INTERACTIONS.get((read_method, shape))
    if interaction is None or (query and interaction not in QUERY_INTERACTIONS):
        raise BadRequest(f"request.url '{'/'.join(path)}' is not a {method} this server supports; use {EXPECTED_URLS[read_method]}.")
    return interaction


def in_processing_order(requests: list[EntryRequest]) -> list[EntryRequest]:
    return sorted(requests, key=lambda request: PROCESSING_ORDER[request.method])
