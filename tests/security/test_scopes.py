"""SMART scopes (App Launch 2.0): the grammar of v1 and v2 resource scopes, what a grant allows, narrowing a grant to
what a client may have, and scopes in plain words for the consent page."""
import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.security import scopes
from app.security.scopes import ScopeError, described, described_other, parse_resource_scope, parse_scopes

VITAL_SIGNS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


@pytest.mark.parametrize("text, context, resource_type, permissions", [
    ("patient/Observation.read", "patient", "Observation", "rs"),
    ("user/*.write", "user", "*", "cud"),
    ("system/*.*", "system", "*", "cruds"),
    ("patient/Observation.rs", "patient", "Observation", "rs"),
    ("user/Encounter.cruds", "user", "Encounter", "cruds"),
    ("system/Patient.c", "system", "Patient", "c"),
    ("patient/*.rs", "patient", "*", "rs"),
    ("user/MedicationRequest.ud", "user", "MedicationRequest", "ud"),
])
def test_v1_and_v2_resource_scopes_parse_to_v2_letters(text, context, resource_type, permissions):
    scope = parse_resource_scope(text)
    assert (scope.context, scope.resource_type, scope.permissions, scope.query, scope.text) == (context, resource_type, permissions, (), text)


def test_a_v2_scope_keeps_its_query_restriction_decoded():
    scope = parse_resource_scope("patient/Observation.rs?category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Cvital-signs")
    assert scope.query == (("category", VITAL_SIGNS),)


def test_a_query_may_name_several_parameters_and_modifiers():
    scope = parse_resource_scope("user/Observation.s?category=laboratory&code:not=1234-5")
    assert scope.query == (("category", "laboratory"), ("code:not", "1234-5"))


@pytest.mark.parametrize("text, complaint", [
    ("patient/Observation", "patient/<type>.<permissions>"),
    ("patient/Observation.sr", "in that order"),
    ("patient/Observation.rr", "in that order"),
    ("patient/Observation.", "in that order"),
    ("patient/Observation.x", "not 'x'"),
    ("nurse/Observation.read", "patient, user or system"),
    ("patient/Foo.rs", "'Foo' is not a FHIR R4 resource type"),
    ("patient/observation.rs", "'observation' is not a FHIR R4 resource type"),
    ("patient/Observation.read?category=laboratory", "needs v2 permissions"),
    ("patient/Observation.rs?bogus=1", "'bogus' is not a search parameter of Observation"),
    ("patient/*.rs?category=laboratory", "'category' is not a search parameter of *"),
    ("patient/Observation.rs?category", "name=value"),
])
def test_a_malformed_resource_scope_is_refused_with_what_is_wrong(text, complaint):
    with pytest.raises(ScopeError, match=complaint.replace("*", r"\*").replace(".", r"\.").replace("(", r"\(")):
        parse_scopes(f"openid {text}")


def test_a_wildcard_type_may_be_restricted_by_the_parameters_every_type_has():
    assert parse_resource_scope("system/*.rs?_tag=http://example.org|confidential").query == (("_tag", "http://example.org|confidential"),)


def test_other_scopes_are_sorted_into_known_and_unrecognized():
    grant = parse_scopes("launch/patient openid fhirUser offline_access patient/Patient.r email https://vendor.example/x")
    assert grant.other == {"launch/patient", "openid", "fhirUser", "offline_access"}
    assert grant.unrecognized == {"email", "https://vendor.example/x"}
    assert [scope.text for scope in grant.resource_scopes] == ["patient/Patient.r"]
    assert grant.texts() == ["patient/Patient.r", "fhirUser", "launch/patient", "offline_access", "openid"]


def test_a_repeated_scope_counts_once():
    assert len(parse_scopes("patient/Observation.rs  patient/Observation.rs").resource_scopes) == 1


@pytest.mark.parametrize("interaction, letter", sorted(scopes.INTERACTION_PERMISSIONS.items()))
def test_each_interaction_is_allowed_by_exactly_its_own_letter(interaction, letter):
    for permissions in ("c", "r", "u", "d", "s"):
        grant = parse_scopes(f"user/Observation.{permissions}")
        assert bool(grant.allowing("Observation", interaction)) == (permissions == letter)


def test_v1_read_allows_read_and_search_but_not_writes():
    grant = parse_scopes("patient/Observation.read")
    allowed = {interaction for interaction in scopes.INTERACTION_PERMISSIONS if grant.allowing("Observation", interaction)}
    assert allowed == {"read", "vread", "history-instance", "search-type", "search-system", "history-type", "history-system"}


def test_a_typed_scope_allows_nothing_on_other_types_and_a_wildcard_allows_every_type():
    assert parse_scopes("patient/Observation.rs").allowing("Condition", "read") == ()
    assert parse_scopes("patient/*.rs").allowing("Condition", "read")


def test_allowing_returns_every_scope_that_grants_so_a_restricted_one_is_seen_beside_an_open_one():
    grant = parse_scopes(f"patient/Observation.rs?category={VITAL_SIGNS} patient/Observation.r")
    assert [scope.text for scope in grant.allowing("Observation", "read")] == [f"patient/Observation.rs?category={VITAL_SIGNS}", "patient/Observation.r"]
    assert [scope.query for scope in grant.allowing("Observation", "search-type")] == [(("category", VITAL_SIGNS),)]


def test_contexts_lists_the_contexts_of_the_resource_scopes():
    assert parse_scopes("patient/Observation.rs user/Encounter.r launch").contexts() == {"patient", "user"}


@pytest.mark.parametrize("requested, allowed, kept", [
    ("patient/Observation.rs", "patient/*.read", ["patient/Observation.rs"]),
    ("patient/Observation.cruds", "patient/*.read", []),
    ("patient/Observation.rs", "user/*.read", []),
    ("patient/*.rs", "patient/Observation.rs", []),
    (f"patient/Observation.rs?category={VITAL_SIGNS}", "patient/Observation.rs", [f"patient/Observation.rs?category={VITAL_SIGNS}"]),
    ("patient/Observation.rs", f"patient/Observation.rs?category={VITAL_SIGNS}", []),
    ("patient/Observation.r patient/Condition.r", "patient/Observation.rs", ["patient/Observation.r"]),
])
def test_a_grant_narrowed_to_what_is_allowed_keeps_only_scopes_wholly_inside_it(requested, allowed, kept):
    narrowed = parse_scopes(f"{requested} openid offline_access").within(parse_scopes(f"{allowed} openid"))
    assert [scope.text for scope in narrowed.resource_scopes] == kept
    assert narrowed.other == {"openid"}


@pytest.mark.parametrize("text, words", [
    ("patient/Observation.rs", "Read and search your Observation records"),
    ("patient/Observation.read", "Read and search your Observation records"),
    ("user/*.cruds", "Create, read, update, delete and search the records of every kind you may see"),
    ("system/Patient.c", "Create all Patient records"),
    (f"patient/Observation.rs?category={VITAL_SIGNS}", "Read and search your Observation records (only those with category vital-signs)"),
])
def test_a_scope_in_plain_words(text, words):
    assert described(parse_resource_scope(text)) == words


def test_every_known_other_scope_has_plain_words():
    assert all(described_other(scope) for scope in scopes.KNOWN_SCOPES)


def test_the_module_examples_run():
    assert doctest.testmod(scopes).failed == 0


SCOPE_ALPHABET = st.sampled_from(["patient", "user", "system", "/", ".", "*", "?", "=", "&", "%", "|", "Observation",
                                  "Patient", "rs", "read", "write", "cruds", "category", "code", "x", " ", ":"])


@given(st.lists(SCOPE_ALPHABET, max_size=12).map("".join))
def test_any_scope_string_parses_or_is_refused_with_scope_error(text):
    try:
        grant = parse_scopes(text)
    except ScopeError:
        return
    for scope in grant.resource_scopes:
        assert scope.permissions and scopes.is_ordered_subset(scope.permissions)
        assert parse_resource_scope(scope.text) == scope


@given(st.text(max_size=40))
def test_arbitrary_text_never_raises_anything_but_scope_error(text):
    try:
        parse_scopes(text)
    except ScopeError:
        pass
