"""A small, fixed FHIR R4 demo data set, delivered as a transaction Bundle.

Every entry is a PUT to a stable id and the measurements come from a seeded
random generator, so the bundle is the same on every call and loading it twice
changes no data.
"""
import random
from datetime import datetime, timedelta
from typing import NamedTuple

MRN_SYSTEM = "http://hospital.example.org/mrn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PROFILE_BASE = "http://hl7.org/fhir/StructureDefinition"
SEED = 20250304
READING_DELAY = timedelta(minutes=30)
ADMISSION_HEART_RATE_RISE = 15  # acutely ill inpatients have faster hearts
DEMO_PRACTITIONER = "demo-practitioner-1"  # the demo clinician who signs in (app/security/demo.py)


class DemoPractitioner(NamedTuple):
    given: tuple[str, ...]
    family: str
    npi: str  # valid NPI check digits
    qualification: str


class DemoPatient(NamedTuple):
    given: tuple[str, ...]
    family: str
    gender: str
    birth_date: str
    mrn: str
    street: str
    city: str
    postal_code: str
    phone: str  # 555-01xx numbers are reserved for fiction
    practitioner: int  # 1-based row of PRACTITIONERS
    # usual readings, around which each encounter's vital signs vary
    heart_rate: int
    systolic: int
    diastolic: int
    spo2: int
    weight_kg: float


class DemoEncounter(NamedTuple):
    patient: int  # 1-based row of PATIENTS
    practitioner: int
    class_code: str
    start: str
    hours: int
    reason: str


class VitalSign(NamedTuple):
    codings: tuple[tuple[str, str], ...]
    text: str
    profile: str


PRACTITIONERS = (
    DemoPractitioner(("Sarah", "Anne"), "Whitfield", "1234567893", "MD"),
    DemoPractitioner(("Rajesh",), "Patel", "1452987609", "MD"),
    DemoPractitioner(("Laura", "Jean"), "Bennett", "1683492718", "DO"),
)

PATIENTS = (
    DemoPatient(("Maria", "Elena"), "Garcia", "female", "1958-04-12", "MRN-100201",
                "14 Elm Street", "Boston", "02118", "617-555-0142", 1, 74, 138, 86, 96, 71.5),
    DemoPatient(("James", "Robert"), "Thompson", "male", "1946-11-03", "MRN-100202",
                "220 Harvard Avenue", "Brookline", "02446", "617-555-0178", 1, 68, 146, 82, 94, 88.0),
    DemoPatient(("Aisha", "Nkechi"), "Okafor", "female", "1989-07-25", "MRN-100203",
                "7 Prospect Hill Road", "Somerville", "02143", "617-555-0115", 2, 66, 114, 72, 99, 63.2),
    DemoPatient(("Wei",), "Chen", "male", "1972-02-18", "MRN-100204",
                "51 Inman Street", "Cambridge", "02139", "617-555-0163", 2, 79, 128, 84, 97, 80.4),
    DemoPatient(("Emily", "Rose"), "Novak", "female", "2001-09-30", "MRN-100205",
                "3 Beacon Court", "Quincy", "02169", "617-555-0191", 3, 71, 110, 68, 99, 57.8),
)

ENCOUNTERS = (
    DemoEncounter(1, 1, "AMB", "2025-01-14T09:00:00+00:00", 1, "Annual check-up"),
    DemoEncounter(1, 1, "AMB", "2025-03-04T09:00:00+00:00", 1, "Hypertension follow-up"),
    DemoEncounter(2, 1, "AMB", "2025-01-21T10:30:00+00:00", 1, "Shortness of breath on exertion"),
    DemoEncounter(2, 2, "IMP", "2025-02-02T18:15:00+00:00", 72, "Community-acquired pneumonia"),
    DemoEncounter(2, 1, "AMB", "2025-02-18T11:00:00+00:00", 1, "Post-discharge review"),
    DemoEncounter(3, 2, "AMB", "2025-02-10T14:00:00+00:00", 1, "Prenatal visit"),
    DemoEncounter(3, 2, "AMB", "2025-03-10T14:00:00+00:00", 1, "Prenatal visit"),
    DemoEncounter(4, 2, "AMB", "2025-01-08T08:30:00+00:00", 1, "Type 2 diabetes review"),
    DemoEncounter(4, 3, "IMP", "2025-02-25T06:45:00+00:00", 48, "Chest pain, rule out myocardial infarction"),
    DemoEncounter(4, 2, "AMB", "2025-03-18T08:30:00+00:00", 1, "Type 2 diabetes review"),
    DemoEncounter(5, 3, "AMB", "2025-01-30T16:00:00+00:00", 1, "Sports physical"),
    DemoEncounter(5, 3, "AMB", "2025-03-12T15:30:00+00:00", 1, "Sore throat"),
)

VITAL_SIGNS = {
    "heart-rate": VitalSign((("8867-4", "Heart rate"),), "Heart rate", "heartrate"),
    "blood-pressure": VitalSign(
        (("85354-9", "Blood pressure panel with all children optional"),), "Blood pressure", "bp"),
    "oxygen-saturation": VitalSign(
        (("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
         ("2708-6", "Oxygen saturation in Arterial blood")), "Oxygen saturation", "oxygensat"),
    "body-weight": VitalSign((("29463-7", "Body weight"),), "Body weight", "bodyweight"),
}


def demo_bundle() -> dict:
    """Return the demo data set as a JSON-ready FHIR R4 transaction Bundle.

    >>> demo_bundle()["entry"][0]["request"]
    {'method': 'PUT', 'url': 'Practitioner/demo-practitioner-1'}
    """
    rng = random.Random(SEED)
    resources = [_practitioner(n, row) for n, row in enumerate(PRACTITIONERS, 1)]
    resources += [_patient(n, row) for n, row in enumerate(PATIENTS, 1)]
    resources += [_encounter(n, row) for n, row in enumerate(ENCOUNTERS, 1)]
    for n, row in enumerate(ENCOUNTERS, 1):
        resources += _vital_signs(n, row, rng)
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_put_entry(r) for r in resources]}


def _put_entry(resource: dict) -> dict:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def _demo_id(resource_type: str, number: int) -> str:
    return f"demo-{resource_type.lower()}-{number}"


def _reference(resource_type: str, number: int) -> dict:
    return {"reference": f"{resource_type}/{_demo_id(resource_type, number)}"}


def _name(given: tuple[str, ...], family: str, prefix: tuple[str, ...] = ()) -> dict:
    name = {"use": "official", "family": family, "given": list(given)}
    return {**name, "prefix": list(prefix)} if prefix else name


def _practitioner(number: int, row: DemoPractitioner) -> dict:
    return {
        "resourceType": "Practitioner",
        "id": _demo_id("Practitioner", number),
        "identifier": [{"system": NPI_SYSTEM, "value": row.npi}],
        "active": True,
        "name": [_name(row.given, row.family, prefix=("Dr",))],
        "qualification": [{"code": {"text": row.qualification}}],
    }


def _patient(number: int, row: DemoPatient) -> dict:
    return {
        "resourceType": "Patient",
        "id": _demo_id("Patient", number),
        "identifier": [_mrn(row.mrn)],
        "active": True,
        "name": [_name(row.given, row.family)],
        "telecom": [{"system": "phone", "value": row.phone, "use": "home"}],
        "gender": row.gender,
        "birthDate": row.birth_date,
        "address": [{"use": "home", "line": [row.street], "city": row.city, "state": "MA",
                     "postalCode": row.postal_code, "country": "US"}],
        "generalPractitioner": [_reference("Practitioner", row.practitioner)],
    }


def _mrn(value: str) -> dict:
    mr = {"system": IDENTIFIER_TYPE, "code": "MR", "display": "Medical Record Number"}
    return {"use": "usual", "type": {"coding": [mr]}, "system": MRN_SYSTEM, "value": value}


def _encounter(number: int, row: DemoEncounter) -> dict:
    start = datetime.fromisoformat(row.start)
    display = {"AMB": "ambulatory", "IMP": "inpatient encounter"}[row.class_code]
    attender = {"system": PARTICIPATION_TYPE, "code": "ATND", "display": "attender"}
    return {
        "resourceType": "Encounter",
        "id": _demo_id("Encounter", number),
        "status": "finished",
        "class": {"system": ACT_CODE, "code": row.class_code, "display": display},
        "subject": _reference("Patient", row.patient),
        "participant": [{"type": [{"coding": [attender]}],
                         "individual": _reference("Practitioner", row.practitioner)}],
        "period": {"start": start.isoformat(), "end": (start + timedelta(hours=row.hours)).isoformat()},
        "reasonCode": [{"text": row.reason}],
    }


def _vital_signs(number: int, encounter: DemoEncounter, rng: random.Random) -> list[dict]:
    """One reading of each vital sign, near the patient's usual values."""
    usual = PATIENTS[encounter.patient - 1]
    heart_rate = usual.heart_rate + (ADMISSION_HEART_RATE_RISE if encounter.class_code == "IMP" else 0)
    systolic, diastolic = round(rng.gauss(usual.systolic, 6)), round(rng.gauss(usual.diastolic, 4))
    return [
        _vital_sign("heart-rate", number, encounter,
                    valueQuantity=_quantity(round(rng.gauss(heart_rate, 5)), "beats/minute", "/min")),
        _vital_sign("blood-pressure", number, encounter, component=[
            _pressure("8480-6", "Systolic blood pressure", systolic),
            _pressure("8462-4", "Diastolic blood pressure", diastolic),
        ]),
        _vital_sign("oxygen-saturation", number, encounter,
                    valueQuantity=_quantity(min(100, round(rng.gauss(usual.spo2, 1))), "%", "%")),
        _vital_sign("body-weight", number, encounter,
                    valueQuantity=_quantity(round(rng.gauss(usual.weight_kg, 0.6), 1), "kg", "kg")),
    ]


def _vital_sign(kind: str, number: int, encounter: DemoEncounter, **value) -> dict:
    """An Observation of the FHIR R4 vital signs profile for `kind`, taken during encounter `number`."""
    sign = VITAL_SIGNS[kind]
    taken = datetime.fromisoformat(encounter.start) + READING_DELAY
    category = {"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}
    return {
        "resourceType": "Observation",
        "id": f"demo-{kind}-{number}",
        "meta": {"profile": [f"{PROFILE_BASE}/{sign.profile}"]},
        "status": "final",
        "category": [{"coding": [category]}],
        "code": {"coding": [_loinc(code, display) for code, display in sign.codings], "text": sign.text},
        "subject": _reference("Patient", encounter.patient),
        "encounter": _reference("Encounter", number),
        "effectiveDateTime": taken.isoformat(),
        **value,
    }


def _pressure(code: str, display: str, mm_hg: int) -> dict:
    return {"code": {"coding": [_loinc(code, display)]}, "valueQuantity": _quantity(mm_hg, "mmHg", "mm[Hg]")}


def _loinc(code: str, display: str) -> dict:
    return {"system": LOINC, "code": code, "display": display}


def _quantity(value: float, unit: str, ucum_code: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": ucum_code}
