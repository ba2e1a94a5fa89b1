"""FHIR's element order, taken from the R4 element table."""
from app.model.ordering import in_element_order


def test_elements_are_put_in_the_order_r4_defines_them():
    observation = {"valueQuantity": {"unit": "mmHg", "value": 120}, "status": "final", "id": "o", "resourceType": "Observation",
                   "code": {"text": "BP", "coding": [{"code": "85354-9", "system": "http://loinc.org"}]}}
    ordered = in_element_order(observation)
    assert list(ordered) == ["resourceType", "id", "status", "code", "valueQuantity"]
    assert list(ordered["code"]) == ["coding", "text"]
    assert list(ordered["code"]["coding"][0]) == ["system", "code"]
    assert list(ordered["valueQuantity"]) == ["value", "unit"]
    assert ordered == observation


def test_a_primitive_extension_follows_its_primitive():
    patient = {"_birthDate": {"extension": [{"valueDateTime": "1980-01-01T06:30:00Z", "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime"}]},
               "resourceType": "Patient", "name": [{"_given": [None, {"id": "g2"}], "given": ["An", "Thi"]}], "birthDate": "1980-01-01", "gender": "female"}
    ordered = in_element_order(patient)
    assert list(ordered) == ["resourceType", "name", "gender", "birthDate", "_birthDate"]
    assert list(ordered["name"][0]) == ["given", "_given"]
    assert list(ordered["_birthDate"]["extension"][0]) == ["url", "valueDateTime"]


def test_contained_and_bundled_resources_are_ordered_by_their_own_type():
    bundle = {"type": "collection", "resourceType": "Bundle", "entry": [{
        "resource": {"name": [{"family": "Berg"}], "id": "p", "resourceType": "Patient",
                     "contained": [{"name": "Acme", "resourceType": "Organization", "id": "org"}], "managingOrganization": {"reference": "#org"}},
        "fullUrl": "urn:uuid:1",
    }]}
    entry = in_element_order(bundle)["entry"][0]
    assert list(entry) == ["fullUrl", "resource"]
    assert list(entry["resource"]) == ["resourceType", "id", "contained", "name", "managingOrganization"]
    assert list(entry["resource"]["contained"][0]) == ["resourceType", "id", "name"]


def test_keys_r4_does_not_define_go_last_as_they_came():
    ordered = in_element_order({"zeta": 1, "resourceType": "Basic", "alpha": 2, "code": {"text": "x"}})
    assert list(ordered) == ["resourceType", "code", "zeta", "alpha"]
