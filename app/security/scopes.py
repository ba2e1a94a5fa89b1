"""SMART on FHIR scopes (App Launch 2.0, scopes-and-launch-context.html): what a token's scope string grants.

A resource scope is `<context>/<type>.<permissions>[?<query>]`:

- context: `patient` (the patient in context, confined to that patient's compartment), `user` (what the user may
  see) or `system` (a backend client, no user);
- type: a resource type, or `*` for every type;
- permissions: v2 letters, a non-empty subset of `c r u d s` written in that order (`rs`, `cruds`), or the v1 words
  `read` (= `rs`), `write` (= `cud`) and `*` (= `cruds`);
- query (v2 only): search parameters that limit the scope to the resources such a search would match
  (`patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs`).

The other scopes ask for launch context (`launch`, `launch/patient`, `launch/encounter`), identity (`openid`,
`fhirUser`, `profile`) and refresh tokens (`offline_access`, `online_access`). A scope that is none of these is kept
as unrecognized: OAuth 2.0 (RFC 6749, 3.3) lets the server leave it out of what it grants.

    >>> grant = parse_scopes("launch/patient patient/Observation.rs openid")
    >>> [scope.text for scope in grant.allowing("Observation", "search-type")]
    ['patient/Observation.rs']
    >>> grant.allowing("Observation", "create")
    ()
"""
import re
from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qsl

from app.errors import FhirError
from app.model.registry import resource_types
from app.search.criteria import Query
from app.store.access import PERMISSION_WORDS
from app.store.criteria import condition_across_types
from app.search.parameters import parameter, shared_parameters

CONTEXTS = ("patient", "user", "system")
PERMISSION_LETTERS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
# FHIR RESTful interactions (R4 http.html) -> the v2 letter that grants each.
INTERACTION_PERMISSIONS = {
    "create": "c",
    "read": "r", "vread": "r", "history-instance": "r",
    "update": "u", "patch": "u",
    "delete": "d",
    "search-type": "s", "search-system": "s", "history-type": "s", "history-system": "s",
}
LAUNCH_SCOPES = frozenset({"launch", "launch/patient", "launch/encounter"})
IDENTITY_SCOPES = frozenset({"openid", "fhirUser", "profile"})
REFRESH_SCOPES = frozenset({"offline_access", "online_access"})
ADMIN_SCOPE = "admin"  # this server's own: the audit trail and the admin API (app/security/admin.py), for backend services
KNOWN_SCOPES = LAUNCH_SCOPES | IDENTITY_SCOPES | REFRESH_SCOPES | {ADMIN_SCOPE}
RESOURCE_SCOPE_SHAPE = re.compile(r"[A-Za-z]+/[A-Za-z*]+\.[A-Za-z*]*(\?.*)?")


class ScopeError(ValueError):
    """A scope that looks like a resource scope but is malformed: the token endpoint answers `invalid_scope`."""


@dataclass(frozen=True)
class ResourceScope:
    """One resource scope, its permissions always as v2 letters; `text` is how the client wrote it."""

    context: str
    resource_type: str  # a resource type, or "*"
    permissions: str  # a subset of "cruds", in that order
    query: tuple[tuple[str, str], ...]
    text: str

    def covers(self, resource_type: str, interaction: str) -> bool:
        """Whether this scope grants `interaction` (a key of INTERACTION_PERMISSIONS) on `resource_type`."""
        return self.resource_type in ("*", resource_type) and INTERACTION_PERMISSIONS[interaction] in self.permissions

    def includes(self, other: "ResourceScope") -> bool:
        """Whether everything `other` grants, this scope grants too (a query only narrows: none includes any)."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and set(other.permissions) <= set(self.permissions)
            and (not self.query or set(self.query) <= set(other.query))
        )


@dataclass(frozen=True)
class Grant:
    """A parsed scope string: the resource scopes, and the other scopes by what they are for."""

    resource_scopes: tuple[ResourceScope, ...]
    other: frozenset[str]  # launch, identity and refresh scopes
    unrecognized: frozenset[str]

    def allowing(self, resource_type: str, interaction: str) -> tuple[ResourceScope, ...]:
        """The resource scopes that grant `interaction` on `resource_type`; () means it is not granted. A scope with
        a query grants it only for the resources that query matches (the caller checks that)."""
        return tuple(scope for scope in self.resource_scopes if scope.covers(resource_type, interaction))

    def contexts(self) -> frozenset[str]:
        return frozenset(scope.context for scope in self.resource_scopes)

    def within(self, allowed: "Grant") -> "Grant":
        """This grant narrowed to `allowed` (a client's registered scopes, or what the user approved): the resource
        scopes that some allowed scope includes, and the other scopes that are allowed by name."""
        kept = tuple(scope for scope in self.resource_scopes if any(limit.includes(scope) for limit in allowed.resource_scopes))
        return Grant(kept, self.other & allowed.other, frozenset())

    def texts(self) -> list[str]:
        """The granted scopes as the token response lists them, unrecognized ones left out."""
        return [scope.text for scope in self.resource_scopes] + sorted(self.other)


def parse_scopes(scope_string: str) -> Grant:
    """The scopes of an OAuth `scope` parameter (space-separated, RFC 6749 3.3); ScopeError names the first
    malformed resource scope."""
    texts = list(dict.fromkeys(scope_string.split()))
    resource_scopes = tuple(parse_resource_scope(text) for text in texts if looks_like_resource_scope(text))
    rest = [text for text in texts if not looks_like_resource_scope(text)]
    return Grant(resource_scopes, frozenset(t for t in rest if t in KNOWN_SCOPES), frozenset(t for t in rest if t not in KNOWN_SCOPES))


def looks_like_resource_scope(text: str) -> bool:
    """`patient/...`, `user/...`, `system/...`, or a `word/Type.permissions` with another word for the context;
    launch/patient is not one, nor a URL."""
    return text not in KNOWN_SCOPES and (text.partition("/")[0] in CONTEXTS or RESOURCE_SCOPE_SHAPE.fullmatch(text) is not None)


def parse_resource_scope(text: str) -> ResourceScope:
    context, _, rest = text.partition("/")
    target, _, query_text = rest.partition("?")
    resource_type, dot, permission_text = target.rpartition(".")
    if context not in CONTEXTS:
        raise ScopeError(f"Scope '{text}': the context must be patient, user or system, not '{context}'.")
    if not dot:
        raise ScopeError(f"Scope '{text}': a resource scope is {context}/<type>.<permissions>, such as {context}/Observation.rs.")
    if resource_type != "*" and resource_type not in resource_types():
        raise ScopeError(f"Scope '{text}': '{resource_type}' is not a FHIR R4 resource type (or * for all).")
    permissions = scope_permissions(text, permission_text)
    if query_text and permission_text in V1_PERMISSIONS:
        raise ScopeError(f"Scope '{text}': a query restriction needs v2 permissions (such as .rs), not the v1 '.{permission_text}'.")
    return ResourceScope(context, resource_type, permissions, scope_query(text, resource_type, query_text), text)


def scope_permissions(text: str, permission_text: str) -> str:
    """The v2 letters of a v1 word, or v2 letters checked: each of c r u d s at most once, in that order."""
    if permission_text in V1_PERMISSIONS:
        return V1_PERMISSIONS[permission_text]
    if not permission_text or not is_ordered_subset(permission_text):
        raise ScopeError(
            f"Scope '{text}': permissions must be read, write or *, or letters of 'cruds' in that order "
            f"(such as rs or cud), not '{permission_text}'."
        )
    return permission_text


def is_ordered_subset(letters: str) -> bool:
    positions = [PERMISSION_LETTERS.find(letter) for letter in letters]
    return -1 not in positions and positions == sorted(set(positions))


def scope_query(text: str, resource_type: str, query_text: str) -> tuple[tuple[str, str], ...]:
    """The (parameter, value) pairs of a v2 scope's query, each parameter one that a search on the type accepts."""
    if not query_text:
        return ()
    try:
        pairs = parse_qsl(query_text, keep_blank_values=False, strict_parsing=True)
    except ValueError:
        raise ScopeError(f"Scope '{text}': the query '{query_text}' is not of the form name=value&name=value.") from None
    for name, value in pairs:
        code = name.partition(":")[0]
        if "." in name or name.startswith("_has:") or not is_scope_parameter(resource_type, code):
            raise ScopeError(f"Scope '{text}': '{name}' is not a search parameter of {resource_type} (chains and _has are not taken).")
        check_criterion(text, resource_type, Query(name, value))
    return tuple(pairs)


def check_criterion(text: str, resource_type: str, query: Query) -> None:
    """ScopeError unless the search would take `query` (its modifier and value), as every request under the scope
    must."""
    types = (resource_type,) if resource_type != "*" else tuple(sorted(resource_types()))
    try:
        condition_across_types(types, query)
    except FhirError as error:
        raise ScopeError(f"Scope '{text}': {error.diagnostics}") from None


def is_scope_parameter(resource_type: str, code: str) -> bool:
    if resource_type == "*":
        return code in parameters_of_every_type()
    return parameter(resource_type, code) is not None


@cache
def parameters_of_every_type() -> frozenset[str]:
    return frozenset(shared_parameters(tuple(sorted(resource_types()))))


# --- in plain words, for the consent page -------------------------------------------------------------------------

CONTEXT_WORDS = {"patient": "your", "user": "the", "system": "all"}
OTHER_SCOPE_WORDS = {
    "openid": "Know who you are",
    "fhirUser": "Know who you are: your FHIR identity (Patient or Practitioner)",
    "profile": "Know who you are: your name",
    "launch": "Receive the patient and encounter open in the EHR",
    "launch/patient": "Know which patient's record you chose",
    "launch/encounter": "Know which encounter is open",
    "offline_access": "Keep access when you are not using the app, until you revoke it",
    "online_access": "Keep access while you stay signed in",
    ADMIN_SCOPE: "Administer this server: its apps, logins and audit trail",
}


def described(scope: ResourceScope) -> str:
    """A resource scope in plain words: 'Read and search your Observation records (only those with category
    vital-signs)'."""
    verbs = [PERMISSION_WORDS[letter] for letter in scope.permissions]
    action = verbs[0] if len(verbs) == 1 else f"{', '.join(verbs[:-1])} and {verbs[-1]}"
    records = "records of every kind" if scope.resource_type == "*" else f"{scope.resource_type} records"
    sentence = f"{action.capitalize()} {CONTEXT_WORDS[scope.context]} {records}"
    if scope.context == "user":
        sentence += " you may see"
    if scope.query:
        limits = " and ".join(f"{name} {value.rpartition('|')[2]}" for name, value in scope.query)
        sentence += f" (only those with {limits})"
    return sentence


def described_other(scope: str) -> str:
    return OTHER_SCOPE_WORDS[scope]
