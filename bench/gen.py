"""Generate a realistic FHIR R4 data set as NDJSON: patients, their practitioners, encounters
and vital-sign Observations over five years.

    .venv/bin/python bench/gen.py --out DIR [--patients 20000] [--observations 1000000] [--seed 1] [--check]

Writes DIR/Practitioner.ndjson, Patient.ndjson, Encounter.ndjson and Observation.ndjson. Ids follow
from each resource's position (`pat-000042`, `obs-0001234`), so the same arguments write the same
bytes and loading the files twice with `ehr load` changes nothing the second time. `--check`
validates a sample of every type with the fhir.resources R4B models and checks ids and references.

What the data looks like:

- one practitioner per 100 patients, with an NPI (valid Luhn check digit) and a qualification;
- patients with names from several languages (accents included), an MRN, birth date, gender,
  address, phone and e-mail, and one of the practitioners as general practitioner;
- observations spread unevenly over patients (log-normal: a few have many), grouped into
  encounters: visits with one set of vitals, emergency stays with a few, inpatient stays with
  a set every 4-8 hours. Each set holds heart rate and blood pressure, usually SpO2 and
  respiratory rate, sometimes temperature and weight;
- values around a per-patient baseline (a third of the adults are hypertensive), LOINC codes,
  UCUM units, the vital-signs category and profile, effectiveDateTime in the patient's
  time zone.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

MRN_SYSTEM = "https://ehr.example.org/sid/mrn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PATIENTS_PER_PRACTITIONER = 100
FIRST_DAY = datetime(2021, 1, 1, tzinfo=timezone.utc)
YEARS = 5
CHECK_SAMPLE = 400  # resources per type validated by --check

FAMILY_NAMES = [
    "García", "Garcia", "González", "Rodríguez", "Martínez", "Hernández", "López", "Pérez", "Sánchez", "Gómez",
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Schäfer", "Köhler", "Groß",
    "Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Girard", "Bonnet", "Fournier",
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
    "Thomas", "Moore", "Jackson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young",
    "Nguyễn", "Trần", "Lê", "Phạm", "Wang", "Li", "Zhang", "Chen", "Liu", "Kim", "Park", "Sato", "Suzuki",
    "Okafor", "Adeyemi", "Mensah", "Diallo", "Kowalski", "Nowak", "Wiśniewski", "Søndergaard", "Ødegaard",
    "Öztürk", "Yılmaz", "Papadopoulos", "Rossi", "Russo", "Ferrari", "Esposito", "O'Brien", "MacDonald",
    "Silva", "Santos", "Conceição", "Ivanova", "Horváth", "Dvořák", "Novák",
]
GIVEN_NAMES = {
    "female": ["María", "Ana", "Lucía", "Sofía", "Emma", "Olivia", "Chloé", "Léa", "Zoë", "Hannah", "Åsa",
               "Anneliese", "Mei", "Linh", "Thảo", "Yuki", "Chiamaka", "Amara", "Agnieszka", "Ingrid", "Siobhán",
               "Elif", "Giulia", "Beatriz", "Sarah", "Jennifer", "Mary", "Patricia", "Linda", "Elizabeth"],
    "male": ["José", "Juan", "Luis", "Carlos", "Liam", "Noah", "James", "John", "Robert", "Michael", "François",
             "Jérôme", "Lukas", "Jürgen", "Björn", "Søren", "Wei", "Minh", "Hiroshi", "Chinedu", "Kwame",
             "Łukasz", "Mehmet", "Giorgos", "Marco", "João", "Sean", "David", "William", "Richard"],
}
PREFIXES = {"female": ["Ms.", "Mrs.", "Dr."], "male": ["Mr.", "Dr."]}
# city, state or region, postal code prefix, country, UTC offset in hours (standard time)
CITIES = [
    ("Boston", "MA", "021", "US", -5), ("New York", "NY", "100", "US", -5), ("Chicago", "IL", "606", "US", -6),
    ("Houston", "TX", "770", "US", -6), ("Denver", "CO", "802", "US", -7), ("Phoenix", "AZ", "850", "US", -7),
    ("Los Angeles", "CA", "900", "US", -8), ("Seattle", "WA", "981", "US", -8), ("Miami", "FL", "331", "US", -5),
    ("San Juan", "PR", "009", "US", -4), ("Montréal", "QC", "H2X", "CA", -5), ("Paris", "Île-de-France", "750", "FR", 1),
    ("München", "Bayern", "803", "DE", 1), ("Madrid", "Madrid", "280", "ES", 1), ("London", "England", "SW1", "GB", 0),
    ("Lagos", "Lagos", "100", "NG", 1), ("Hà Nội", "Hà Nội", "100", "VN", 7), ("São Paulo", "SP", "010", "BR", -3),
]
ENGLISH_STREETS = ["Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Park Rd", "Broad St", "Church St"]
STREETS = {"US": ENGLISH_STREETS, "GB": ["Station Rd", "High St", "Church Lane"], "NG": ["Broad St", "Awolowo Rd"],
           "CA": ["Rue Saint-Denis", "Boulevard René-Lévesque"], "FR": ["Rue de la Paix", "Rue Lafayette"],
           "DE": ["Hauptstraße", "Schloßstraße"], "ES": ["Calle Mayor", "Calle de Alcalá"],
           "VN": ["Phố Huế", "Đường Láng"], "BR": ["Avenida Paulista", "Rua Augusta"]}
SPECIALTIES = [("208D00000X", "General Practice"), ("207Q00000X", "Family Medicine"),
               ("207R00000X", "Internal Medicine"), ("208000000X", "Pediatrics")]

# LOINC code, display, profile, UCUM code, unit as shown
HEART_RATE = ("8867-4", "Heart rate", "heartrate", "/min", "beats/minute")
RESPIRATORY_RATE = ("9279-1", "Respiratory rate", "resprate", "/min", "breaths/minute")
OXYGEN_SATURATION = ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "oxygensat", "%", "%")
BODY_TEMPERATURE = ("8310-5", "Body temperature", "bodytemp", "Cel", "C")
BODY_WEIGHT = ("29463-7", "Body weight", "bodyweight", "kg", "kg")
BLOOD_PRESSURE = ("85354-9", "Blood pressure panel with all children optional", "bp", "mm[Hg]", "mmHg")
SYSTOLIC = ("8480-6", "Systolic blood pressure")
DIASTOLIC = ("8462-4", "Diastolic blood pressure")
# share of vital-sign sets that hold each optional measurement (heart rate and BP are always taken)
OPTIONAL_VITALS = [(OXYGEN_SATURATION, 0.8), (RESPIRATORY_RATE, 0.7), (BODY_TEMPERATURE, 0.6), (BODY_WEIGHT, 0.35)]

VITAL_SIGNS_CATEGORY = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "vital-signs", "display": "Vital Signs"}], "text": "Vital Signs"}]
ENCOUNTER_CLASSES = {
    "AMB": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
    "EMER": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER", "display": "emergency"},
    "IMP": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter"},
}
ENCOUNTER_TYPES = {
    "AMB": ("185349003", "Encounter for check up"),
    "EMER": ("50849002", "Emergency room admission"),
    "IMP": ("32485007", "Hospital admission"),
}


def patient_id(index: int) -> str:
    return f"pat-{index:06d}"


def practitioner_id(index: int) -> str:
    return f"prac-{index:05d}"


def mrn(index: int) -> str:
    """The patient's medical record number: distinct for every index below 10**8."""
    return f"M{(index * 7919 + 104729) % 10**8:08d}"


def practitioner_count(patients: int) -> int:
    return max(1, math.ceil(patients / PATIENTS_PER_PRACTITIONER))


def folded(text: str) -> str:
    """Lower case without accents, as a string search compares: `Nguyễn` -> `nguyen`."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def npi(index: int) -> str:
    """A 10-digit NPI whose last digit is the Luhn check digit over '80840' + the first nine."""
    body = f"1{(index * 7411 + 2345678) % 10**8:08d}"
    digits = [int(d) for d in "80840" + body]
    total = sum(d if i % 2 else sum(divmod(2 * d, 10)) for i, d in enumerate(reversed(digits)))
    return body + str((10 - total % 10) % 10)


def timestamp(seconds: float, offset_hours: int) -> str:
    """An ISO dateTime at the given UTC offset, e.g. 2024-03-05T14:22:07-05:00."""
    zone = timezone(timedelta(hours=offset_hours))
    return (FIRST_DAY + timedelta(seconds=int(seconds))).astimezone(zone).isoformat()


# --- practitioners and patients ------------------------------------------------------------

def practitioner(index: int, rng: random.Random) -> dict:
    gender = rng.choice(["female", "male"])
    specialty = rng.choice(SPECIALTIES)
    family, given = rng.choice(FAMILY_NAMES), rng.choice(GIVEN_NAMES[gender])
    return {
        "resourceType": "Practitioner", "id": practitioner_id(index), "active": True,
        "identifier": [{"use": "official", "system": NPI_SYSTEM, "value": npi(index)}],
        "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr."]}],
        "telecom": [{"system": "phone", "value": f"+1-555-02{index % 100:02d}-{rng.randrange(10000):04d}", "use": "work"}],
        "gender": gender,
        "qualification": [{"code": {"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": specialty[0],
                                                "display": specialty[1]}], "text": specialty[1]}}],
    }


@dataclass
class PatientProfile:
    """What the generator needs to know about a patient to write their encounters and vitals."""
    index: int
    reference: str
    practitioner: str
    offset_hours: int
    age_in_2021: int
    heart_rate: float
    systolic: float
    weight: float


def patient(index: int, practitioners: int, rng: random.Random) -> tuple[dict, PatientProfile]:
    gender = rng.choices(["female", "male", "other", "unknown"], weights=[49, 49, 1, 1])[0]
    names_gender = gender if gender in GIVEN_NAMES else rng.choice(["female", "male"])
    family = rng.choice(FAMILY_NAMES)
    given = [rng.choice(GIVEN_NAMES[names_gender])] + ([rng.choice(GIVEN_NAMES[names_gender])] if rng.random() < 0.3 else [])
    birth = datetime(1930, 1, 1) + timedelta(days=rng.randrange(93 * 365))
    city, state, postal, country, offset = rng.choice(CITIES)
    gp = rng.randrange(practitioners)
    body = {
        "resourceType": "Patient", "id": patient_id(index), "active": True,
        "identifier": [{"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                             "code": "MR", "display": "Medical record number"}]},
                        "system": MRN_SYSTEM, "value": mrn(index)}],
        "name": person_names(family, given, names_gender, rng),
        "telecom": [
            {"system": "phone", "value": f"+1-555-01{index % 100:02d}-{rng.randrange(10000):04d}",
             "use": rng.choice(["home", "mobile"])},
            {"system": "email", "value": f"{folded(given[0])}.{folded(family).replace(' ', '')}{index}@example.org".replace("'", "")},
        ],
        "gender": gender,
        "birthDate": birth.date().isoformat(),
        "address": [{"use": "home", "line": [f"{rng.randrange(1, 9999)} {rng.choice(STREETS[country])}"], "city": city,
                     "state": state, "postalCode": f"{postal}{rng.randrange(100):02d}", "country": country}],
        "generalPractitioner": [{"reference": f"Practitioner/{practitioner_id(gp)}"}],
    }
    return body, patient_profile(index, gp, offset, 2021 - birth.year, rng)


def person_names(family: str, given: list[str], gender: str, rng: random.Random) -> list[dict]:
    names = [{"use": "official", "family": family, "given": given}]
    if rng.random() < 0.2:
        names[0]["prefix"] = [rng.choice(PREFIXES[gender])]
    if gender == "female" and rng.random() < 0.1:
        names.append({"use": "maiden", "family": rng.choice(FAMILY_NAMES), "given": given})
    return names


def patient_profile(index: int, gp: int, offset: int, age: int, rng: random.Random) -> PatientProfile:
    hypertensive = age >= 30 and rng.random() < 0.33
    adult_weight = rng.gauss(78, 16)
    weight = min(adult_weight, 3.5 + 3.2 * max(age, 0)) if age < 18 else adult_weight
    return PatientProfile(
        index=index, reference=f"Patient/{patient_id(index)}", practitioner=f"Practitioner/{practitioner_id(gp)}",
        offset_hours=offset, age_in_2021=age, heart_rate=rng.gauss(74, 8) + (20 if age < 5 else 0),
        systolic=rng.gauss(150, 12) if hypertensive else rng.gauss(118, 10), weight=max(3.0, weight),
    )


# --- encounters and observations ---------------------------------------------------------------

def observation_counts(patients: int, observations: int, rng: random.Random) -> list[int]:
    """Split `observations` over patients, log-normally (a few patients have many), summing exactly."""
    weights = [rng.lognormvariate(0, 0.8) for _ in range(patients)]
    scale = observations / sum(weights)
    counts = [int(w * scale) for w in weights]
    for index in range(observations - sum(counts)):
        counts[index % patients] += 1
    return counts


@dataclass
class Ids:
    """Running counters behind the stable ids of encounters and observations."""
    encounter: int = 0
    observation: int = 0

    def next_encounter(self) -> str:
        self.encounter += 1
        return f"enc-{self.encounter:07d}"

    def next_observation(self) -> str:
        self.observation += 1
        return f"obs-{self.observation:08d}"


def encounter_plan(rng: random.Random) -> tuple[str, int, float]:
    """(class, sets of vitals, hours between sets) of one encounter."""
    kind = rng.choices(["AMB", "EMER", "IMP"], weights=[70, 15, 15])[0]
    if kind == "AMB":
        return kind, 1, 0.0
    if kind == "EMER":
        return kind, rng.randint(1, 3), rng.uniform(0.5, 2)
    return kind, rng.randint(3, 20), rng.uniform(4, 8)


def patient_encounters(profile: PatientProfile, count: int, ids: Ids, rng: random.Random):
    """Yield (encounter, observations) pairs for one patient until `count` observations are written."""
    span = YEARS * 365 * 86400
    while count > 0:
        kind, sets, gap_hours = encounter_plan(rng)
        start = rng.uniform(0, span - 10 * 86400)
        observations = []
        for n in range(sets):
            moment = start + n * gap_hours * 3600 + rng.uniform(0, 600)
            observations += vital_set(profile, moment, kind, rng)
            if len(observations) >= count:
                break
        observations = observations[:count]
        count -= len(observations)
        encounter_id = ids.next_encounter()
        end = start + (sets - 1) * gap_hours * 3600 + rng.uniform(900, 3600)
        for body in observations:
            body["id"] = ids.next_observation()
            body["encounter"] = {"reference": f"Encounter/{encounter_id}"}
        yield encounter(encounter_id, profile, kind, start, end), observations


def encounter(encounter_id: str, profile: PatientProfile, kind: str, start: float, end: float) -> dict:
    code, display = ENCOUNTER_TYPES[kind]
    return {
        "resourceType": "Encounter", "id": encounter_id, "status": "finished", "class": ENCOUNTER_CLASSES[kind],
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}], "text": display}],
        "subject": {"reference": profile.reference},
        "participant": [{"individual": {"reference": profile.practitioner}}],
        "period": {"start": timestamp(start, profile.offset_hours), "end": timestamp(end, profile.offset_hours)},
    }


def vital_set(profile: PatientProfile, moment: float, kind: str, rng: random.Random) -> list[dict]:
    """One round of vitals taken together: heart rate and BP, and the optional ones by their share."""
    ill = kind != "AMB" and rng.random() < 0.3
    when = timestamp(moment, profile.offset_hours)
    values = [
        (HEART_RATE, round(rng.gauss(profile.heart_rate + (15 if ill else 0), 7))),
        (BLOOD_PRESSURE, None),
    ]
    for vital, share in OPTIONAL_VITALS:
        if rng.random() < share:
            values.append((vital, optional_value(vital, profile, ill, rng)))
    return [vital_sign(profile, vital, value, when, rng) for vital, value in values]


def optional_value(vital: tuple, profile: PatientProfile, ill: bool, rng: random.Random) -> float:
    if vital is OXYGEN_SATURATION:
        return min(100, round(rng.gauss(93 if ill else 97.5, 1.8)))
    if vital is RESPIRATORY_RATE:
        return max(8, round(rng.gauss(22 if ill else 15, 2.5)))
    if vital is BODY_TEMPERATURE:
        return round(rng.gauss(38.4 if ill else 36.8, 0.35), 1)
    return round(profile.weight + rng.gauss(0, 1.2), 1)


def vital_sign(profile: PatientProfile, vital: tuple, value, when: str, rng: random.Random) -> dict:
    code, display, profile_name, ucum, unit = vital
    body = {
        "resourceType": "Observation",
        "id": None,  # numbered once the encounter's observations are known
        "meta": {"profile": [f"http://hl7.org/fhir/StructureDefinition/{profile_name}"]},
        "status": "final",
        "category": VITAL_SIGNS_CATEGORY,
        "code": loinc_concept(code, display, also_pulse_oximetry=vital is OXYGEN_SATURATION),
        "subject": {"reference": profile.reference},
        "encounter": None,
        "effectiveDateTime": when,
        "performer": [{"reference": profile.practitioner}],
    }
    if vital is BLOOD_PRESSURE:
        systolic = round(rng.gauss(profile.systolic, 9))
        diastolic = round(systolic * rng.uniform(0.58, 0.7))
        body["component"] = [
            {"code": loinc_concept(*SYSTOLIC), "valueQuantity": quantity(systolic, unit, ucum)},
            {"code": loinc_concept(*DIASTOLIC), "valueQuantity": quantity(diastolic, unit, ucum)},
        ]
    else:
        body["valueQuantity"] = quantity(value, unit, ucum)
    return body


def loinc_concept(code: str, display: str, also_pulse_oximetry: bool = False) -> dict:
    codings = [{"system": LOINC, "code": code, "display": display}]
    if also_pulse_oximetry:  # US Core pulse oximetry carries both codes
        codings.append({"system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"})
    return {"coding": codings, "text": display}


def quantity(value, unit: str, ucum: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": ucum}


# --- writing -------------------------------------------------------------------------------------

class NdjsonFiles:
    """One buffered NDJSON file per resource type, and every `stride`-th resource kept for --check."""

    TYPES = ("Practitioner", "Patient", "Encounter", "Observation")

    def __init__(self, out: Path, strides: dict[str, int]):
        out.mkdir(parents=True, exist_ok=True)
        self.paths = {name: out / f"{name}.ndjson" for name in self.TYPES}
        self.files = {name: path.open("wb", buffering=1 << 20) for name, path in self.paths.items()}
        self.counts = dict.fromkeys(self.TYPES, 0)
        self.strides = strides
        self.sample: list[dict] = []

    def write(self, body: dict) -> None:
        name = body["resourceType"]
        if self.counts[name] % self.strides[name] == 0:
            self.sample.append(body)
        self.counts[name] += 1
        self.files[name].write(orjson.dumps(body) + b"\n")

    def close(self) -> None:
        for file in self.files.values():
            file.close()


def generate(out: Path, patients: int, observations: int, seed: int) -> NdjsonFiles:
    rng = random.Random(seed)
    practitioners = practitioner_count(patients)
    strides = {"Practitioner": max(1, practitioners // CHECK_SAMPLE), "Patient": max(1, patients // CHECK_SAMPLE),
               "Encounter": max(1, observations // 10 // CHECK_SAMPLE), "Observation": max(1, observations // CHECK_SAMPLE)}
    files = NdjsonFiles(out, strides)
    try:
        for index in range(practitioners):
            files.write(practitioner(index, rng))
        ids = Ids()
        for index, count in enumerate(observation_counts(patients, observations, rng)):
            body, profile = patient(index, practitioners, rng)
            files.write(body)
            for encounter_body, observation_bodies in patient_encounters(profile, count, ids, rng):
                files.write(encounter_body)
                for observation_body in observation_bodies:
                    files.write(observation_body)
    finally:
        files.close()
    return files


# --- --check ---------------------------------------------------------------------------------------

def check(files: NdjsonFiles, patients: int, observations: int) -> list[str]:
    """Problems found: R4B validation failures of the sample, wrong counts, dangling references."""
    from fhir.resources.R4B import get_fhir_model_class  # slow to import; only when asked

    problems = []
    for body in files.sample:
        try:
            get_fhir_model_class(body["resourceType"]).model_validate(body)
        except Exception as error:  # noqa: BLE001 - every invalid resource is reported
            problems.append(f"{body['resourceType']}/{body['id']}: {str(error)[:300]}")
    if files.counts["Patient"] != patients or files.counts["Observation"] != observations:
        problems.append(f"wrote {files.counts['Patient']} patients and {files.counts['Observation']} observations")
    problems += reference_problems(files.sample, files.counts)
    mrns = {mrn(index) for index in range(patients)}
    if len(mrns) != patients:
        problems.append("MRNs are not distinct")
    return problems


def reference_problems(sample: list[dict], counts: dict[str, int]) -> list[str]:
    """References in the sample must point inside the id ranges that were written."""
    limits = {"Patient": ("pat-", counts["Patient"] - 1), "Practitioner": ("prac-", counts["Practitioner"] - 1),
              "Encounter": ("enc-", counts["Encounter"])}
    problems = []
    for body in sample:
        for reference in references_in(body):
            target_type, target_id = reference.split("/")
            prefix, highest = limits[target_type]
            if not target_id.startswith(prefix) or not 0 <= int(target_id.removeprefix(prefix)) <= highest:
                problems.append(f"{body['resourceType']}/{body['id']} points at missing {reference}")
    return problems


def references_in(body: dict) -> list[str]:
    found = [body[key]["reference"] for key in ("subject", "encounter") if key in body]
    found += [item["reference"] for key in ("performer", "generalPractitioner") for item in body.get(key, [])]
    found += [item["individual"]["reference"] for item in body.get("participant", [])]
    return found


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/bench-data"), help="output directory (default var/bench-data)")
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check", action="store_true", help="validate a sample with the fhir.resources R4B models")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    files = generate(args.out, args.patients, args.observations, args.seed)
    seconds = time.monotonic() - started
    total = sum(files.counts.values())
    sizes = ", ".join(f"{files.counts[n]:,} {n} ({files.paths[n].stat().st_size / 2**20:,.0f} MiB)" for n in files.TYPES)
    print(f"wrote {sizes} to {args.out} in {seconds:.1f} s ({total / seconds:,.0f} resources/s)")
    if not args.check:
        return 0
    problems = check(files, args.patients, args.observations)
    for problem in problems[:20]:
        print(f"  CHECK FAILED {problem}")
    print(f"check: {len(files.sample)} sampled resources validated with fhir.resources R4B, "
          f"{'OK' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
