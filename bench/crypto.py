"""Field-level protection benchmark: what encrypting people's identifying fields costs the REST API, and how fast
`ehr keys rewrap` brings stored values to new keys.

For each backend (PostgreSQL unless --backend says otherwise), two fresh databases measured back to back on the same
machine: protection off, then on (EHR_KEY_FILE naming a key file written by `ehr keys init`). Authorization is off
in both (EHR_AUTH=off), so only encryption differs. Under gunicorn as gunicorn.conf.py runs it, 16 keep-alive
clients (2 processes x 8 threads, as bench/crud.py):

- create realistic Patients (POST), generated from a fixed seed so that both databases store the same people: 1-2
  names, an MRN, a phone and an e-mail, a home address with a postal code, birthDate and gender;
- read them (GET Patient/id);
- search them, in equal shares: by identifier (MRN system|value: one match), family-name prefix (3 letters), birthdate
  (one day) and phone. People share name prefixes, birth dates and household phones, a few per value, so that the
  other three searches each match a few patients.

Then a sample of reads must give back what was sent and a sample of searches must find exactly the expected number of
patients. With protection on, `ehr keys add` and `ehr keys promote` of a value key, then of an index key (whose
rewrap rebuilds the blind index rows), each followed by a timed `ehr keys rewrap`; the plaintext database gets a timed
`ehr keys rewrap` with a key configured, which turns protection on for data written without it. A rewrap is timed
whole, process start included, but only after the 20 s that the command waits after a promotion for every server to
use the new key. Its rate is of rows: current versions and history versions (every create writes one of each). Both
rewrapped databases are then checked again through a server.

    .venv/bin/python bench/crypto.py [--quick] [--backend postgresql|sqlite|both] [--patients N] [--wait-quiet S]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)
import gen  # noqa: E402
from common import Figure  # noqa: E402
from crud import created_id, dumps  # noqa: E402
from search import get_bundle  # noqa: E402

DATABASE_PREFIX = "bench_crypto"
CLIENTS = (2, 8)  # processes x threads: 16 keep-alive clients, as bench/crud.py
SEED = 20240611
PROMOTION_WAIT_SECONDS = 20.5  # app/protection/commands.py's SEEN_EVERYWHERE (rewrap waits that long after a promotion), and a margin
SHARED_BY = 3  # patients per family-name prefix, birth date and household phone, on average
WRITE_RATIO_TARGET = 0.85  # creates/s with protection on / off
READ_RATIO_TARGET = 0.90
REWRAP_TARGET = 2_000  # resources/s, process start included
RATIO_TARGETS = {"creates/s": WRITE_RATIO_TARGET, "reads/s": READ_RATIO_TARGET}
CHECKED_FIELDS = ("active", "identifier", "name", "telecom", "gender", "birthDate", "address")
OFF, ON = "off", "on"


@dataclass(frozen=True)
class Sizes:
    patients: int  # measured creates
    warmup: int  # creates before them, stored too
    reads: int
    searches: int
    checked: int  # reads and searches whose answers are checked, each


QUICK = Sizes(patients=1_000, warmup=100, reads=2_000, searches=1_000, checked=40)
FULL = Sizes(patients=10_000, warmup=500, reads=20_000, searches=8_000, checked=200)


# --- realistic patients --------------------------------------------------------------------

ONSETS = "BCDFGHKLMNPRSTVWZ"
VOWELS = "aeiouy"
CODAS = "bdgklmnprstvz"
FAMILY_ENDINGS = ["son", "ton", "ler", "man", "ez", "ski", "ard", "ello", "berg", "ová", "sen", "ley", "ini", "ou", "eau"]


@dataclass(frozen=True)
class SharedValues:
    """What several patients have in common: the first 3 letters of a family name, a birth date, a household phone."""
    stems: list[str]
    birth_dates: list[str]
    phones: list[str]

    @classmethod
    def drawn(cls, patients: int, rng: random.Random) -> "SharedValues":
        count = max(1, patients // SHARED_BY)
        stems = [onset + vowel + coda for onset in ONSETS for vowel in VOWELS for coda in CODAS]
        days = rng.sample(range(93 * 365), count)
        return cls(stems=rng.sample(stems, min(count, len(stems))),
                   birth_dates=[(date(1930, 1, 1) + timedelta(days=d)).isoformat() for d in days],
                   phones=[f"+1-555-{n // 10_000:03d}-{n % 10_000:04d}" for n in rng.sample(range(10**7), count)])

    def family(self, rng: random.Random) -> str:
        return rng.choice(self.stems) + rng.choice(FAMILY_ENDINGS)


def patient(index: int, shared: SharedValues, rng: random.Random) -> dict:
    """A Patient as a registration desk writes one; no id (the server assigns it)."""
    gender = rng.choices(["female", "male", "other", "unknown"], weights=[49, 49, 1, 1])[0]
    given_names = gen.GIVEN_NAMES.get(gender) or gen.GIVEN_NAMES[rng.choice(["female", "male"])]
    given = rng.sample(given_names, rng.choice([1, 1, 2]))
    family = shared.family(rng)
    city, state, postal, country, _ = rng.choice(gen.CITIES)
    return {
        "resourceType": "Patient", "active": True,
        "identifier": [{"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                             "code": "MR"}]}, "system": gen.MRN_SYSTEM, "value": gen.mrn(index)}],
        "name": person_names(family, given, gender, shared, rng),
        "telecom": [{"system": "phone", "value": rng.choice(shared.phones), "use": "home"},
                    {"system": "email", "value": f"{gen.folded(given[0])}.{gen.folded(family)}{index}@example.org"}],
        "gender": gender,
        "birthDate": rng.choice(shared.birth_dates),
        "address": [{"use": "home", "line": [f"{rng.randrange(1, 9999)} {rng.choice(gen.STREETS[country])}"], "city": city,
                     "state": state, "postalCode": f"{postal}{rng.randrange(100):02d}", "country": country}],
    }


def person_names(family: str, given: list[str], gender: str, shared: SharedValues, rng: random.Random) -> list[dict]:
    """The official name, and for three in ten people a former one (a maiden name, or one from before a change)."""
    names = [{"use": "official", "family": family, "given": given}]
    if rng.random() < 0.3:
        names.append({"use": "maiden" if gender == "female" else "old", "family": shared.family(rng), "given": given})
    return names


# The value each search looks a patient up by; a family search by the first 3 letters of any of their names.
SEARCHED = {
    "identifier": lambda person: {f"{gen.MRN_SYSTEM}|{person['identifier'][0]['value']}"},
    "family": lambda person: {name["family"][:3] for name in person["name"]},
    "birthdate": lambda person: {person["birthDate"]},
    "phone": lambda person: {person["telecom"][0]["value"]},
}


@dataclass
class Population:
    """The patients both databases are sent, in the order they are created (the warm-up's first)."""
    bodies: list[dict]

    @classmethod
    def generated(cls, count: int, seed: int) -> "Population":
        rng = random.Random(seed)
        shared = SharedValues.drawn(count, rng)
        return cls([patient(index, shared, rng) for index in range(count)])

    @cached_property
    def matches(self) -> dict[str, collections.Counter]:
        """Per search parameter, how many patients each value finds."""
        return {code: collections.Counter(value for body in self.bodies for value in values(body))
                for code, values in SEARCHED.items()}

    @cached_property
    def by_mrn(self) -> dict[str, dict]:
        return {body["identifier"][0]["value"]: body for body in self.bodies}

    def search(self, code: str, rng: random.Random) -> tuple[str, int]:
        """(request path, expected matches) of a search by `code` for the value of a patient drawn at random."""
        value = rng.choice(sorted(SEARCHED[code](rng.choice(self.bodies))))
        return f"/fhir/Patient?{code}={quote(value, safe='')}", self.matches[code][value]


# --- jobs: (kind, method, path, body) ---------------------------------------------------------

def create_jobs(bodies: list[dict]) -> list[tuple]:
    return [("create", "POST", "/fhir/Patient", dumps(body)) for body in bodies]


def read_jobs(rng: random.Random, count: int, ids: list[str]) -> list[tuple]:
    return [("read", "GET", f"/fhir/Patient/{rng.choice(ids)}", None) for _ in range(count)]


def search_jobs(rng: random.Random, count: int, population: Population) -> list[tuple]:
    """The four searches in equal shares, interleaved."""
    codes = list(SEARCHED)
    return [(code, "GET", population.search(code, rng)[0], None) for code in (codes[n % len(codes)] for n in range(count))]


# --- checking answers ---------------------------------------------------------------------------

def wrong_answers(port: int, population: Population, ids: list[str], count: int, rng: random.Random) -> list[str]:
    """What `count` reads and `count` searches got wrong: a body unlike the one sent, a number of matches unlike the
    number of patients sent with the value."""
    wrong = [f"GET Patient/{pid}: {problem}" for pid in rng.sample(ids, min(count, len(ids)))
             if (problem := read_problem(port, population, pid))]
    for n in range(count):
        path, expected = population.search(list(SEARCHED)[n % len(SEARCHED)], rng)
        status, bundle = fetched(port, f"{path}&_count=100")
        found = sum((entry.get("search") or {}).get("mode", "match") == "match" for entry in bundle.get("entry") or [])
        if status != 200 or found != expected:
            wrong.append(f"GET {path}: HTTP {status}, {found} matches, {expected} expected {outcome_text(bundle)}".rstrip())
    return wrong


def read_problem(port: int, population: Population, pid: str) -> str | None:
    status, body = fetched(port, f"/fhir/Patient/{pid}")
    if status != 200:
        return f"HTTP {status} {outcome_text(body)}"
    sent = population.by_mrn.get(((body.get("identifier") or [{}])[0]).get("value"), {})
    differing = [name for name in CHECKED_FIELDS if body.get(name) != sent.get(name)]
    return f"{', '.join(differing)} differ from what was sent" if differing else None


def fetched(port: int, path: str) -> tuple[int, dict]:
    """search.py's get_bundle, with status 0 when the server cannot be reached (it stopped: a wrong answer too)."""
    try:
        return get_bundle(port, path)
    except OSError as error:
        return 0, {"resourceType": "OperationOutcome", "issue": [{"diagnostics": repr(error)}]}


def outcome_text(body: dict) -> str:
    if body.get("resourceType") != "OperationOutcome":
        return ""
    return "; ".join(issue.get("diagnostics", "") for issue in body.get("issue") or [])[:300]


# --- the server and the command line ----------------------------------------------------------------

def protected_env(database_url: str, key_file: Path | None) -> dict[str, str]:
    """server_env, with protection on when a key file is given; never inherited from the caller's environment."""
    env = {name: value for name, value in common.server_env(database_url).items() if name not in ("EHR_KEY_FILE", "EHR_KEY")}
    return {**env, "EHR_KEY_FILE": str(key_file)} if key_file else env


@contextlib.contextmanager
def serving(env: dict[str, str], log_path: Path):
    """gunicorn on env's database, ready; stopped on exit, with its log's tail printed if the block failed."""
    server = common.start_gunicorn(env, log_path)
    try:
        common.wait_until_ready(server)
        yield server
    except Exception:
        print(f"gunicorn log tail:\n{server.log_tail()}")
        raise
    finally:
        common.stop_server(server)


def server_tracebacks(server: common.Server) -> list[str]:
    """The last line of each traceback in the server's log: the errors behind its 500s."""
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    starts = [n for n, line in enumerate(lines) if line.startswith("Traceback")]
    return [next((line for line in lines[start + 1:] if line and not line.startswith(" ")), "?") for start in starts]


def timed_rewrap(env: dict[str, str]) -> tuple[dict, float]:
    """`ehr keys rewrap`'s output ({"rows", "rewrapped"}) and its wall time."""
    started = time.perf_counter()
    done = common.run_ehr(["keys", "rewrap"], env)
    seconds = time.perf_counter() - started
    if "Waiting" in done.stderr:
        print(f"  WARNING: the rewrap waited for a promotion inside its timing: {done.stderr.strip()[:200]}")
    return orjson.loads(done.stdout), seconds


def rotated(env: dict[str, str], purpose: str) -> tuple[dict, float]:
    """Add a data key, promote it, wait out the servers' key-ring refresh, then time the rewrap."""
    added = orjson.loads(common.run_ehr(["keys", "add", "--purpose", purpose], env).stdout)
    common.run_ehr(["keys", "promote", added["id"]], env)
    time.sleep(PROMOTION_WAIT_SECONDS)
    return timed_rewrap(env)


# --- one database: protection off or on ---------------------------------------------------------------

class Run:
    """The phases on one database, sharing its server, the created ids and the figures."""

    def __init__(self, backend: str, setting: str, env: dict[str, str], workdir: Path, population: Population, sizes: Sizes):
        self.backend, self.setting, self.env, self.workdir = backend, setting, env, workdir
        self.population, self.sizes = population, sizes
        self.rng = random.Random(SEED + 1)  # the same requests in both settings
        self.ids: list[str] = []
        self.failed = 0
        self.figures: list[Figure] = []

    @property
    def label(self) -> str:
        return f"{self.backend} @ {self.setting}"

    def figure(self, name: str, value: float | None, unit: str = "", target: str = "—", passed: bool | None = None) -> None:
        self.figures.append(Figure(name, self.label, value, unit, target, passed))

    def say(self, text: str) -> None:
        print(f"  [{self.backend} {self.setting}] {text}")

    def log_path(self, phase: str) -> Path:
        return self.workdir / f"gunicorn-{self.backend}-{self.setting}-{phase}.log"

    def load(self, server: common.Server, jobs: list[tuple], label: str) -> common.LoadResult:
        result = common.run_load(functools.partial(common.HttpSession, server.port), jobs, *CLIENTS, server=server)
        failures = [r for r in result.records if not common.is_success(r.status)]
        self.failed += len(failures)
        for kind in sorted({r.kind for r in result.records}):
            self.say(f"{label:<9} {common.phase_line(result, kind)}")
        self.say(f"{label:<9} {common.cpu_line(result)}")
        if failures:
            self.say(f"{label:<9} {len(failures)} failed: {sorted({(r.kind, r.status) for r in failures})[:8]} {result.first_errors[:2]}")
        return result

    def measure_phase(self, server: common.Server, jobs: list[tuple], label: str, noun: str) -> common.LoadResult:
        """One load phase, reported as its rate, p99 and worker CPU per successful request."""
        result = self.load(server, jobs, label)
        ok = [r.seconds for r in result.records if common.is_success(r.status)]
        self.figure(f"{label}/s", len(ok) / result.wall_seconds if result.wall_seconds else None, "/s")
        self.figure(f"{noun} p99", 1000 * common.percentile(ok, 0.99), "ms")
        self.figure(f"worker CPU per {noun}", 1000 * result.server_cpu_seconds / len(ok) if ok else None, "ms")
        return result

    def measure_all(self) -> None:
        with serving(self.env, self.log_path("load")) as server:
            self.say(f"gunicorn on 127.0.0.1:{server.port}, workers {server.worker_pids()}")
            warmup, measured = self.population.bodies[:self.sizes.warmup], self.population.bodies[self.sizes.warmup:]
            self.collect_ids(self.load(server, create_jobs(warmup), "warm-up"))
            self.collect_ids(self.measure_phase(server, create_jobs(measured), "creates", "create"))
            self.measure_phase(server, read_jobs(self.rng, self.sizes.reads, self.ids), "reads", "read")
            searched = self.measure_phase(server, search_jobs(self.rng, self.sizes.searches, self.population), "searches", "search")
            for code in SEARCHED:
                ok = [r.seconds for r in searched.of_kind(code) if common.is_success(r.status)]
                self.figure(f"search by {code} p50", 1000 * common.percentile(ok, 0.50), "ms")
            self.figure("failed requests", self.failed, "", "0", self.failed == 0)
            self.check_answers(server, "answers wrong (sampled reads and searches)")

    def collect_ids(self, result: common.LoadResult) -> None:
        self.ids += [pid for r in result.records if (pid := created_id(r.location))]

    def check_answers(self, server: common.Server, name: str) -> None:
        wrong = wrong_answers(server.port, self.population, self.ids, self.sizes.checked, random.Random(SEED + 2))
        self.figure(name, len(wrong), "", "0", not wrong)
        for line in wrong[:5]:
            self.say(f"WRONG {line}")
        for line in server_tracebacks(server)[:5]:
            self.say(f"server error: {line}")

    def measure_rewrap(self, name: str, rewrap) -> None:
        """A rewrap (a function returning `ehr keys rewrap`'s output and seconds) as resources/s against the target, and
        rows/s (a Patient has a current and a history row)."""
        output, seconds = rewrap()
        resources = self.sizes.warmup + self.sizes.patients
        rate = resources / seconds if seconds else None
        self.say(f"{name}: {resources:,} resources, {output['rows']:,} rows looked at, {output['rewrapped']:,} rewrapped in {seconds:.2f} s")
        self.figure(f"{name}: resources/s", rate, "/s", f">= {REWRAP_TARGET:,} resources/s", rate is not None and rate >= REWRAP_TARGET)
        self.figure(f"{name}: rows/s", output["rows"] / seconds if seconds else None, "/s")
        self.figure(f"{name}: rows rewrapped", output["rewrapped"], "")
        self.figure(f"{name}: seconds", seconds, "s")

    def measure_command_start(self) -> None:
        """The wall time of a command that does next to nothing, for reading a rewrap's: its start is in both."""
        started = time.perf_counter()
        common.run_ehr(["keys", "list"], self.env)
        self.figure("`ehr keys list` wall time (a command's start)", time.perf_counter() - started, "s")

    def measure_key_rotations(self) -> None:
        """With protection on: a new value key, then a new index key, each promoted and rewrapped; answers checked."""
        self.measure_command_start()
        self.measure_rewrap("rewrap after a value key promotion", lambda: rotated(self.env, "value"))
        self.measure_rewrap("rewrap after an index key promotion", lambda: rotated(self.env, "index"))
        with serving(self.env, self.log_path("rotated")) as server:
            self.check_answers(server, "answers wrong after the rotations")

    def measure_protection_turned_on(self, key_file: Path) -> None:
        """The plaintext database, rewrapped with a key configured; answers checked with protection on."""
        self.env = protected_env(self.env["EHR_DATABASE_URL"], key_file)
        self.setting = ON  # the figures are of protection on, beside the rotations'
        self.measure_rewrap("rewrap of a plaintext database", lambda: timed_rewrap(self.env))
        with serving(self.env, self.log_path("turned-on")) as server:
            self.check_answers(server, "answers wrong after turning protection on")


def bench_backend(backend: str, sizes: Sizes, args) -> list[Figure]:
    """Protection off, then on, each on a fresh database of `backend`; the off one is then rewrapped with a key."""
    busy = common.wait_for_quiet_machine(args.wait_quiet)
    if busy >= common.QUIET_BUSY_PERCENT:
        print(f"  WARNING: the machine is {busy:.0f}% busy with other work: the figures will be low")
    workdir = Path(tempfile.mkdtemp(prefix=f"ehr-bench-crypto-{backend}-"))
    population = Population.generated(sizes.warmup + sizes.patients, SEED)
    figures: list[Figure] = []
    try:
        key_file = workdir / "bench.key"
        common.run_ehr(["keys", "init", "--file", str(key_file)], protected_env("sqlite://", None))
        for setting in (OFF, ON):
            with common.fresh_database(backend, workdir, f"{DATABASE_PREFIX}_{setting}") as url:
                env = protected_env(url, key_file if setting == ON else None)
                common.run_ehr(["db", "upgrade"], env)
                if setting == ON:  # its first data keys, made before the workers start: two making them at once collide
                    common.run_ehr(["keys", "list"], env)
                run = Run(backend, setting, env, workdir, population, sizes)
                run.measure_all()
                if setting == ON:
                    run.measure_key_rotations()
                else:
                    run.measure_protection_turned_on(key_file)
                figures += run.figures
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


# --- the report ------------------------------------------------------------------------------------------

def comparison_rows(figures: list[Figure]) -> list[tuple[str, ...]]:
    """One row per figure and backend: its value off and on, on/off, and the target's verdict."""
    pairs: dict[tuple[str, str], dict[str, Figure]] = {}
    for figure in figures:
        backend, _, setting = figure.backend.partition(" @ ")
        pairs.setdefault((figure.name, backend), {})[setting] = figure
    return [comparison_row(name, backend, pair.get(OFF), pair.get(ON)) for (name, backend), pair in pairs.items()]


def comparison_row(name: str, backend: str, off: Figure | None, on: Figure | None) -> tuple[str, ...]:
    ratio = on.value / off.value if off and on and off.value and on.value is not None else None
    if name in RATIO_TARGETS:
        target, passed = f">= {RATIO_TARGETS[name]:.2f} on/off", ratio is not None and ratio >= RATIO_TARGETS[name]
    else:
        measured = [f for f in (off, on) if f]
        target = measured[0].target
        passed = None if all(f.passed is None for f in measured) else all(f.passed for f in measured)
    verdict = {True: "PASS", False: "MISS", None: ""}[passed]
    return (name, backend, off.formatted_value() if off else "—", on.formatted_value() if on else "—",
            f"{ratio:.2f}" if ratio is not None else "—", target, verdict)


def table_lines(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A Markdown table, its columns padded to line up in a terminal too."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-|-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return [f"| {line} |" for line in lines]


def print_report(machine: dict[str, str], figures: list[Figure], sizes: Sizes, backends: list[str]) -> None:
    print("\n## Machine\n")
    for key, value in machine.items():
        print(f"- {key}: {value}")
    urls = {"postgresql": common.sqlalchemy_postgres_url(DATABASE_PREFIX), "sqlite": "sqlite:///ehr.db"}
    servers = "; ".join(f"{name}: {common.gunicorn_description(urls[name])}" for name in backends)
    print(f"- load: {CLIENTS[0]} client processes x {CLIENTS[1]} threads ({CLIENTS[0] * CLIENTS[1]} keep-alive clients); "
          f"{servers}")
    print(f"- {sizes.patients:,} Patients created after {sizes.warmup:,} of warm-up, {sizes.reads:,} reads, "
          f"{sizes.searches:,} searches; {sizes.checked} reads and {sizes.checked} searches checked per database")
    print("\n## Results: protection off and on\n")
    header = ("figure", "backend", OFF, ON, "on/off", "target", "result")
    print("\n".join(table_lines(header, comparison_rows(figures))))


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.patients:,} patients, for a smoke test (a couple of minutes)")
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="postgresql")
    parser.add_argument("--patients", type=int, help=f"Patients created and measured per database (default {FULL.patients:,})")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each backend, wait up to this long for other work on the machine to stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped to a file
    base = QUICK if args.quick else FULL
    sizes = Sizes(args.patients or base.patients, base.warmup, base.reads, base.searches, base.checked)
    machine = common.describe_machine()
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    figures = [figure for backend in backends for figure in bench_backend(backend, sizes, args)]
    print_report(machine, figures, sizes, backends)
    return 0  # a MISS is a figure to act on, not a failure of the script


if __name__ == "__main__":
    sys.exit(main())
