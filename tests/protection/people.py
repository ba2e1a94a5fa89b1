"""People whose every protected element holds a value found nowhere else: what the tests write and look for."""

BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"


def narrative(words: str) -> dict:
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{words}</div>'}


PATIENT = {
    "resourceType": "Patient", "id": "pat-a",
    "text": narrative("Quentinius Zyxwvutson, born 1931"),
    "identifier": [{"system": "urn:mrn", "value": "MRN-778899"}, {"system": "urn:nhs", "value": "NHS-4455667"}],
    "name": [{"use": "official", "family": "Zyxwvutson", "given": ["Quentinius", "Albérik"]}],
    "telecom": [{"system": "phone", "value": "555-0199"}, {"system": "email", "value": "q.zyx@example.org"}],
    "gender": "female",
    "birthDate": "1931-07-19",
    "_birthDate": {"extension": [{"url": BIRTH_TIME, "valueDateTime": "1931-07-19T10:11:00Z"}]},
    "address": [{"use": "home", "line": ["12 Quincampoix Lane"], "city": "Vexfordshire", "postalCode": "QX9 1ZZ", "country": "Ruritania"}],
    "maritalStatus": {"text": "Neverwed-Plainvalue"},  # not protected: stays readable in the database
    "photo": [{"contentType": "image/png", "data": "UGhvdG9ncmFwaE9mUXVlbnRpbg=="}],
    "contact": [{"name": {"family": "Ybarrondo", "given": ["Wilhelmina"]}, "telecom": [{"system": "phone", "value": "555-0142"}],
                 "address": {"city": "Jorvikhaven"}}],
}

RELATED_PERSON = {
    "resourceType": "RelatedPerson", "id": "rel-a",
    "text": narrative("Wuthering Kestrelby"),
    "patient": {"reference": "Patient/pat-a"},
    "identifier": [{"system": "urn:rp", "value": "RP-3141592"}],
    "name": [{"family": "Kestrelby", "given": ["Wuthering"]}],
    "telecom": [{"system": "email", "value": "kestrelby@example.net"}],
    "gender": "male",
    "birthDate": "1958-11-23",
    "_birthDate": {"id": "bd1", "extension": [{"url": BIRTH_TIME, "valueDateTime": "1958-11-23T04:05:00Z"}]},
    "address": [{"city": "Oxhollow", "postalCode": "OX4 7QQ"}],
    "photo": [{"contentType": "image/jpeg", "url": "https://photos.example.org/kestrelby.jpg"}],
}

PRACTITIONER = {
    "resourceType": "Practitioner", "id": "doc-a",
    "text": narrative("Dr Plainname of Hexhamworth"),
    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "NPI-2718281"}],
    "name": [{"family": "Plainname"}],  # a practitioner's name is not protected by default
    "telecom": [{"system": "phone", "value": "555-0777"}],
    "address": [{"line": ["1 Surgery Row"], "city": "Hexhamworth"}],
}

PEOPLE = (PATIENT, RELATED_PERSON, PRACTITIONER)

# What must not be readable in the database, as written and as the index would fold it.
PROTECTED_VALUES = (
    "Zyxwvutson", "zyxwvutson", "zyxwvu", "Quentinius", "quentinius", "Albérik", "alberik", "MRN-778899", "NHS-4455667",
    "555-0199", "q.zyx@example.org", "1931-07-19", "1931-07", "Quincampoix", "quincampoix", "Vexfordshire",
    "vexfordshire", "QX9 1ZZ", "qx9 1zz", "Ruritania", "ruritania", "UGhvdG9ncmFwaE9mUXVlbnRpbg", "Ybarrondo",
    "ybarrondo", "Wilhelmina", "555-0142", "Jorvikhaven", "RP-3141592", "Kestrelby", "kestrelby", "Wuthering", "wuthering",
    "1958-11-23", "Oxhollow", "oxhollow", "OX4 7QQ", "photos.example.org", "NPI-2718281", "555-0777", "Surgery Row",
    "Hexhamworth", "hexhamworth",
)
# What is not protected, and so is stored as it is.
PLAIN_VALUES = ("Neverwed-Plainvalue", "urn:mrn", "Plainname", "plainname", "female")


def without_meta(body: dict) -> dict:
    return {name: value for name, value in body.items() if name != "meta"}
