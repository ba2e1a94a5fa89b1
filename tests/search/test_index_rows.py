"""Index rows are remembered per (type, parameter, elements read): a remembered row set must be exactly what a fresh
extraction gives, whatever was extracted before, and every caller gets rows of its own."""
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from app.demo import demo_bundle
from app.protection.service import UNPROTECTED
from app.search import index

DEMO = [entry["resource"] for entry in demo_bundle()["entry"]]
BLOOD_PRESSURE = {
    "resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/a"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": code}]},
         "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
        for code, value in (("8480-6", 120), ("8462-4", 80))
    ],
    "meta": {"tag": [{"system": "http://example.org/tags", "code": "checked"}]},
}
SAMPLES = DEMO + [BLOOD_PRESSURE]


def fresh_rows(resource: dict) -> dict:
    forget_rows()
    return as_plain(index.index_rows(resource["resourceType"], resource, UNPROTECTED))


def forget_rows() -> None:
    index.SEEN_ROWS.clear()
    index.SEEN_ONCE.clear()


def as_plain(rows: dict) -> dict:
    return {parameter_type: sorted(map(repr, type_rows)) for parameter_type, type_rows in rows.items() if type_rows}


@st.composite
def mixes(draw):
    """Resources of one type whose top-level elements each come from one of the samples of that type (or are left
    out), so that they share some elements and differ in others."""
    type_name = draw(st.sampled_from(sorted({sample["resourceType"] for sample in SAMPLES})))
    kin = [sample for sample in SAMPLES if sample["resourceType"] == type_name]
    keys = sorted({key for sample in kin for key in sample} - {"resourceType", "id"})
    donors = st.lists(st.sampled_from(kin), min_size=len(keys), max_size=len(keys))
    return [
        {"resourceType": type_name, **{key: donor[key] for key, donor in zip(keys, chosen) if key in donor}}
        for chosen in draw(st.lists(donors, min_size=2, max_size=8))
    ]


@settings(max_examples=200, deadline=None)
@given(mixes())
def test_rows_remembered_from_other_resources_are_those_a_fresh_extraction_gives(resources):
    expected = [fresh_rows(resource) for resource in resources]
    for _ in range(2):  # remembered from the second lookup
        for resource in resources:
            index.index_rows(resource["resourceType"], resource, UNPROTECTED)
    assert [as_plain(index.index_rows(resource["resourceType"], resource, UNPROTECTED)) for resource in resources] == expected


def test_each_caller_gets_rows_of_its_own():
    resource = BLOOD_PRESSURE
    forget_rows()
    index.index_rows("Observation", resource, UNPROTECTED)
    first = index.index_rows("Observation", resource, UNPROTECTED)  # remembered rows, copied
    expected = as_plain(first)
    for type_rows in first.values():
        for row in type_rows:
            row["n"] = 99
            row["h_param"] = 0
    assert as_plain(index.index_rows("Observation", resource, UNPROTECTED)) == expected


def test_a_decimal_and_a_text_of_the_same_digits_are_different_elements():
    decimal, text = ({"valueQuantity": {"value": value}} for value in (Decimal("5.0"), "5.0"))
    assert index.read_elements_json(decimal, ("valueQuantity",), ()) != index.read_elements_json(text, ("valueQuantity",), ())


def test_a_parameter_over_meta_is_remembered_by_the_meta_elements_it_reads():
    tag = next(indexed for indexed in index.indexed_parameters("Patient") if indexed.parameter.code == "_tag")
    assert tag.reads == ((), ("tag",))
    first = {"resourceType": "Patient", "meta": {"versionId": "1", "tag": [{"system": "s", "code": "a"}]}}
    second = {"resourceType": "Patient", "meta": {"versionId": "2", "tag": [{"system": "s", "code": "b"}]}}
    index.index_rows("Patient", first, UNPROTECTED)
    assert as_plain(index.index_rows("Patient", second, UNPROTECTED)) == fresh_rows(second)


def test_large_elements_are_indexed_but_not_remembered():
    attachment = {"contentType": "application/pdf", "data": "QUJD" * 1000}
    document = {"resourceType": "DocumentReference", "status": "current", "content": [{"attachment": attachment}]}
    forget_rows()
    rows = index.index_rows("DocumentReference", document, UNPROTECTED)
    assert any(row.get("code") == "application/pdf" for row in rows["token"])  # contenttype
    assert all(len(key[2]) <= 1024 for key in index.SEEN_ROWS)


def test_rows_are_remembered_when_their_elements_recur_and_not_before():
    """Elements seen once (an Observation's value, its time) are not worth the memory; a second sighting is."""
    forget_rows()
    index.index_rows("Observation", BLOOD_PRESSURE, UNPROTECTED)
    assert index.SEEN_ROWS == {}
    index.index_rows("Observation", BLOOD_PRESSURE, UNPROTECTED)
    remembered = {code for _, code, _ in index.SEEN_ROWS}
    assert {"code", "subject", "status", "component-value-quantity", "_tag"} <= remembered
