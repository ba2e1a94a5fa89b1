"""CRUD benchmark of the FHIR REST API on PostgreSQL and SQLite.

For each backend: a fresh database, `ehr db upgrade`, gunicorn as gunicorn.conf.py
runs it (a gthread worker per core, 8 threads), then concurrent creates and reads of vital-sign Observations, a raw
single-row INSERT floor, a preload to 100,000 stored resources with reads at
that size (at saturation from 16 clients, then from 4 clients paced to half
that rate for the latency target), a CRUD mix compared per core with published figures, and worker
memory. Prints one table with targets; docs/benchmarks.md explains each figure.

    .venv/bin/python bench/crud.py [--quick] [--backend postgresql|sqlite|both] [--compare REV | --auth]

`--auth` runs each backend twice back to back, with EHR_AUTH=off and with tokens required (a clinician's
`user/*.cruds` token on every request, so every request is also audited), and prints the on/off ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)
from common import Figure  # noqa: E402

DATABASE_NAME = "ehr_bench"
RSS_TARGET_MIB = 150
FLOOR_RATIO_TARGET = 0.40
OUTSIDE_CPU_TARGET = common.QUIET_BUSY_PERCENT  # % of the cores used by other work: above it, the figures are skewed
# Health Samurai FHIR server benchmark, 8 vCPU, CRUD req/s divided by 8.
PUBLISHED_PER_VCPU = {"Aidbox": 651.5, "HAPI": 382.25, "Medplum": 177.5, "Microsoft": 55.0}
READ_P99_TARGET_MS = 5  # with 100,000 stored, at a moderate load (issue 11)
LATENCY_CLIENTS = (2, 2)  # processes x threads
LATENCY_LOAD_SHARE = 0.5  # read latency is measured at this share of the saturated read rate
MIX_SHARES = {"read": 0.40, "create": 0.30, "update": 0.20, "history": 0.05, "delete": 0.05}
BUNDLE_SIZE = 1000


@dataclass(frozen=True)
class Sizes:
    requests: int  # per measured phase
    stored: int  # resources stored before the read-at-size and mix phases
    patients: int


QUICK = Sizes(requests=1_000, stored=3_000, patients=20)
FULL = Sizes(requests=20_000, stored=100_000, patients=200)


# --- realistic resources ------------------------------------------------------------

# LOINC code, display, UCUM unit, low, high, decimals
VITAL_SIGNS = [
    ("8867-4", "Heart rate", "/min", 48, 130, 0),
    ("9279-1", "Respiratory rate", "/min", 10, 28, 0),
    ("8310-5", "Body temperature", "Cel", 35.5, 39.5, 1),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 88, 100, 0),
    ("29463-7", "Body weight", "kg", 3, 140, 1),
    ("8302-2", "Body height", "cm", 50, 200, 1),
]
BLOOD_PRESSURE = [("8480-6", "Systolic blood pressure", 95, 180), ("8462-4", "Diastolic blood pressure", 55, 110)]
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


def patient(patient_id: str, rng: random.Random) -> dict:
    born = EPOCH - timedelta(days=rng.randrange(365, 365 * 90))
    return {
        "resourceType": "Patient", "id": patient_id, "active": True,
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": f"{rng.randrange(10**8, 10**9)}"}],
        "name": [{"family": rng.choice(["Smith", "Garcia", "Nguyen", "Okafor", "Müller"]),
                  "given": [rng.choice(["Ana", "Ben", "Chen", "Dara", "Eli"])]}],
        "gender": rng.choice(["female", "male", "other", "unknown"]),
        "birthDate": born.date().isoformat(),
    }


def coding(code: str, display: str) -> dict:
    return {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display}


def quantity(value: float, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def vital_sign(rng: random.Random, patient_ids: list[str], obs_id: str | None = None) -> dict:
    """A vital-signs Observation (as US Core/IPS shape them) of one of the patients."""
    body = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs", "display": "Vital Signs"}]}],
        "subject": {"reference": f"Patient/{rng.choice(patient_ids)}"},
        "effectiveDateTime": (EPOCH + timedelta(seconds=rng.randrange(3 * 10**7))).isoformat(),
    }
    if obs_id:
        body["id"] = obs_id
    if rng.random() < 0.2:
        return {**body, **blood_pressure_values(rng)}
    code, display, unit, low, high, decimals = rng.choice(VITAL_SIGNS)
    return {**body, "code": coding(code, display),
            "valueQuantity": quantity(round(rng.uniform(low, high), decimals), unit)}


def blood_pressure_values(rng: random.Random) -> dict:
    components = [{"code": coding(code, display), "valueQuantity": quantity(rng.randrange(low, high), "mm[Hg]")}
                  for code, display, low, high in BLOOD_PRESSURE]
    return {"code": coding("85354-9", "Blood pressure panel with all children optional"),
            "component": components}


def dumps(resource: dict) -> bytes:
    return orjson.dumps(resource)


# --- jobs: (kind, method, path, body) ----------------------------------------------------

def create_jobs(rng: random.Random, count: int, patient_ids: list[str]) -> list[tuple]:
    return [("create", "POST", "/fhir/Observation", dumps(vital_sign(rng, patient_ids))) for _ in range(count)]


def read_jobs(rng: random.Random, count: int, ids: list[str]) -> list[tuple]:
    return [("read", "GET", f"/fhir/Observation/{rng.choice(ids)}", None) for _ in range(count)]


def update_job(rng: random.Random, obs_id: str, patient_ids: list[str]) -> tuple:
    return ("update", "PUT", f"/fhir/Observation/{obs_id}", dumps(vital_sign(rng, patient_ids, obs_id)))


def mix_jobs(rng: random.Random, count: int, ids: list[str], patient_ids: list[str]) -> list[tuple]:
    """CRUD mix in MIX_SHARES proportions, shuffled; deleted ids are never touched otherwise."""
    kinds = [kind for kind, share in MIX_SHARES.items() for _ in range(round(count * share))]
    doomed = rng.sample(ids, kinds.count("delete"))
    doomed_set = set(doomed)
    alive = [i for i in ids if i not in doomed_set]
    jobs = [mix_job(kind, rng, alive, patient_ids) for kind in kinds if kind != "delete"]
    jobs += [("delete", "DELETE", f"/fhir/Observation/{obs_id}", None) for obs_id in doomed]
    rng.shuffle(jobs)
    return jobs


def mix_job(kind: str, rng: random.Random, ids: list[str], patient_ids: list[str]) -> tuple:
    if kind == "create":
        return create_jobs(rng, 1, patient_ids)[0]
    if kind == "update":
        return update_job(rng, rng.choice(ids), patient_ids)
    if kind == "history":
        return ("history", "GET", f"/fhir/Observation/{rng.choice(ids)}/_history", None)
    return read_jobs(rng, 1, ids)[0]


def floor_jobs(rng: random.Random, count: int, patient_ids: list[str]) -> list[tuple]:
    """(kind, res_type, res_id, body text): the same Observations, stored as the server would."""
    now = datetime.now(timezone.utc).isoformat()
    jobs = []
    for n in range(count):
        obs_id = f"floor-{n:07d}"
        body = {**vital_sign(rng, patient_ids, obs_id), "meta": {"versionId": "1", "lastUpdated": now}}
        jobs.append(("floor", "Observation", obs_id, orjson.dumps(body).decode()))
    return jobs


def created_id(location: str | None) -> str | None:
    """The id in a Location header `.../Observation/{id}/_history/{version}`."""
    if not location:
        return None
    parts = location.rstrip("/").split("/")
    return parts[parts.index("_history") - 1] if "_history" in parts else parts[-1]


# --- one backend ---------------------------------------------------------------------------

@dataclass
class Backend:
    name: str
    database_url: str
    make_floor_session: object  # picklable factory of a floor session
    workdir: Path
    tree: Path = common.REPO_ROOT  # the checkout whose server code runs
    revision: str | None = None  # its name in a --compare run, or "auth on"/"auth off" in an --auth run
    auth: bool = False  # tokens required (EHR_AUTH on)

    @property
    def label(self) -> str:
        return f"{self.name} @ {self.revision}" if self.revision else self.name


@contextlib.contextmanager
def postgres_backend(workdir: Path):
    """A fresh PostgreSQL database with the floor table; dropped on exit."""
    common.create_database(DATABASE_NAME)
    try:
        dsn = common.postgres_dsn(DATABASE_NAME)
        common.create_postgres_floor_table(dsn)
        yield Backend("postgresql", common.sqlalchemy_postgres_url(DATABASE_NAME),
                      functools.partial(common.PostgresFloorSession, dsn), workdir)
    finally:
        common.drop_database(DATABASE_NAME)


@contextlib.contextmanager
def sqlite_backend(workdir: Path):
    """A fresh SQLite file for the server and another for the floor, in the run's temp dir."""
    floor_path = str(workdir / "floor.db")
    common.create_sqlite_floor_table(floor_path)
    yield Backend("sqlite", f"sqlite:///{workdir / 'ehr.db'}",
                  functools.partial(common.SqliteFloorSession, floor_path), workdir)


@contextlib.contextmanager
def running_server(backend: Backend, gunicorn_args: str):
    """Upgrade the schema, issue a token when the backend requires one, start gunicorn, wait for /readyz; always stop
    it. Yields the server and the token (None without auth)."""
    env = common.server_env(backend.database_url, backend.tree, backend.auth)
    common.run_ehr(["db", "upgrade"], env)
    token = common.issued_token(env, backend.workdir) if backend.auth else None
    server = common.start_gunicorn(env, backend.workdir / f"gunicorn-{backend.name}.log",
                                   extra_args=tuple(shlex.split(gunicorn_args)))
    try:
        common.wait_until_ready(server)
        yield server, token
    finally:
        common.stop_server(server)


class Run:
    """The phases of one backend's benchmark, sharing the server, the ids and the figures."""

    def __init__(self, backend: Backend, server: common.Server, token: str | None, sizes: Sizes, args):
        self.backend, self.server, self.token, self.sizes = backend, server, token, sizes
        self.processes, self.threads = args.processes, args.threads
        self.rng = random.Random(20240101)
        self.patient_ids = [f"bench-patient-{n:04d}" for n in range(sizes.patients)]
        self.observation_ids: list[str] = []
        self.errors = 0
        self.outside_cpu_worst = 0.0
        self.figures: list[Figure] = []

    def figure(self, name: str, value: float | None, unit: str = "", target: str = "—",
               passed: bool | None = None) -> None:
        self.figures.append(Figure(name, self.backend.label, value, unit, target, passed))

    def http_load(self, jobs: list[tuple], label: str, processes: int | None = None,
                  threads: int | None = None, rate: float | None = None) -> common.LoadResult:
        result = common.run_load(functools.partial(common.HttpSession, self.server.port, self.token), jobs,
                                 processes or self.processes, threads or self.threads, self.server, rate)
        self.account(result, label)
        return result

    def account(self, result: common.LoadResult, label: str) -> None:
        """Count failures and print one line per request kind plus where the CPU went."""
        failures = [r for r in result.records if not common.is_success(r.status)]
        self.errors += len(failures)
        for kind in sorted({r.kind for r in result.records}):
            print(f"  [{self.backend.name}] {label:<14} {common.phase_line(result, kind)}")
        print(f"  [{self.backend.name}] {label:<14} {common.cpu_line(result)}")
        self.outside_cpu_worst = max(self.outside_cpu_worst, common.outside_cpu_share(result))
        if failures:
            statuses = sorted({(r.kind, r.status) for r in failures})
            print(f"  [{self.backend.name}] {label:<14} {len(failures)} failed: {statuses[:8]} "
                  f"{result.first_errors[:2]}")

    # -- phases --

    def seed_patients(self) -> None:
        jobs = [("patient", "PUT", f"/fhir/Patient/{pid}", dumps(patient(pid, self.rng)))
                for pid in self.patient_ids]
        self.http_load(jobs, "patients")

    def measure_creates(self) -> float:
        result = self.http_load(create_jobs(self.rng, self.sizes.requests, self.patient_ids), "creates")
        self.observation_ids += [i for r in result.records if (i := created_id(r.location))]
        rate = self.report_kind(result, "create", "creates", "create")
        self.figure("load generator CPU share (creates)", common.cpu_share(result.client_cpu_seconds, result), "%")
        return rate

    def measure_reads(self, label: str) -> float:
        if not self.observation_ids:
            print(f"  [{self.backend.name}] no stored Observation ids: skipping {label}")
            return 0.0
        result = self.http_load(read_jobs(self.rng, self.sizes.requests, self.observation_ids), label)
        return self.report_kind(result, "read", label, "read")

    def measure_read_latency(self, label: str, saturated_rate: float) -> None:
        """Reads from 4 clients paced to half the saturated rate: the latency a client sees
        when the server is busy but not overloaded."""
        if not self.observation_ids or not saturated_rate:
            return
        jobs = read_jobs(self.rng, self.sizes.requests // 2, self.observation_ids)
        result = self.http_load(jobs, label, *LATENCY_CLIENTS, rate=LATENCY_LOAD_SHARE * saturated_rate)
        ok = [r.seconds for r in result.of_kind("read") if common.is_success(r.status)]
        p99 = 1000 * common.percentile(ok, 0.99)
        self.figure(f"{label}: reads/s (paced)", len(ok) / result.wall_seconds if result.wall_seconds else None, "/s")
        self.figure(f"{label}: read p50", 1000 * common.percentile(ok, 0.50), "ms")
        self.figure(f"{label}: read p99", p99, "ms", f"< {READ_P99_TARGET_MS} ms", bool(ok) and p99 < READ_P99_TARGET_MS)

    def report_kind(self, result: common.LoadResult, kind: str, label: str, noun: str) -> float:
        ok = [r.seconds for r in result.of_kind(kind) if common.is_success(r.status)]
        rate = len(ok) / result.wall_seconds if result.wall_seconds else 0.0
        self.figure(f"{label}: {noun}s/s", rate, "/s")
        self.figure(f"{label}: {noun} p50", 1000 * common.percentile(ok, 0.50), "ms")
        self.figure(f"{label}: {noun} p99", 1000 * common.percentile(ok, 0.99), "ms")
        return rate

    def measure_floor(self, server_rate: float) -> None:
        jobs = floor_jobs(self.rng, self.sizes.requests, self.patient_ids)
        result = common.run_load(self.backend.make_floor_session, jobs, self.processes, self.threads)
        self.account(result, "floor")
        floor_rate = sum(common.is_success(r.status) for r in result.records) / result.wall_seconds
        self.figure("floor: raw INSERT+COMMIT rows/s", floor_rate, "/s")
        ratio = server_rate / floor_rate if floor_rate else None
        if self.backend.name == "postgresql":
            self.figure("server creates / floor", ratio, "", f">= {FLOOR_RATIO_TARGET:.2f}",
                        ratio is not None and ratio >= FLOOR_RATIO_TARGET)
        else:
            self.figure("server creates / floor", ratio)

    def preload(self) -> None:
        """Top the store up to sizes.stored resources, with `ehr load` or transaction Bundles."""
        count = self.sizes.stored - len(self.patient_ids) - len(self.observation_ids)
        if count <= 0:
            return
        ids = [f"bench-obs-{n:07d}" for n in range(count)]
        started = time.monotonic()
        loader = self.load_ndjson if common.ehr_has_command("load", self.env()) else self.load_bundles
        loaded = loader(ids)
        seconds = time.monotonic() - started
        print(f"  [{self.backend.name}] preload        {len(loaded):,} Observations in {seconds:.1f} s "
              f"via {loader.__name__}")
        self.observation_ids += loaded
        self.figure(f"preload ({loader.__name__}) resources/s", len(loaded) / seconds if seconds else None, "/s")

    def env(self) -> dict[str, str]:
        return common.server_env(self.backend.database_url, self.backend.tree, self.backend.auth)

    def load_ndjson(self, ids: list[str]) -> list[str]:
        """One `ehr load` per core on PostgreSQL; one on SQLite, whose writers queue anyway."""
        parts = (os.cpu_count() or 1) if self.backend.name == "postgresql" else 1
        paths = [self.backend.workdir / f"preload-{n}.ndjson" for n in range(parts)]
        for path, part in zip(paths, (ids[n::parts] for n in range(parts))):
            path.write_bytes(b"".join(dumps(vital_sign(self.rng, self.patient_ids, i)) + b"\n" for i in part))
        common.run_ehr_in_parallel([["load", str(path)] for path in paths], self.env())
        return ids

    def load_bundles(self, ids: list[str]) -> list[str]:
        """POST transaction Bundles of PUTs; returns no ids if any Bundle failed (counted as errors)."""
        jobs = [("bundle", "POST", "/fhir", dumps(self.transaction(ids[i:i + BUNDLE_SIZE])))
                for i in range(0, len(ids), BUNDLE_SIZE)]
        result = self.http_load(jobs, "preload", processes=1, threads=2)
        return ids if all(common.is_success(r.status) for r in result.records) else []

    def transaction(self, ids: list[str]) -> dict:
        entries = [{"resource": vital_sign(self.rng, self.patient_ids, obs_id),
                    "request": {"method": "PUT", "url": f"Observation/{obs_id}"}} for obs_id in ids]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    def measure_mix(self) -> None:
        if not self.observation_ids:
            return
        result = self.http_load(mix_jobs(self.rng, self.sizes.requests, self.observation_ids,
                                         self.patient_ids), "crud mix")
        ok = [r.seconds for r in result.records if common.is_success(r.status)]
        rate = len(ok) / result.wall_seconds
        per_core = rate / (os.cpu_count() or 1)
        self.figure("crud mix: requests/s", rate, "/s")
        self.figure("crud mix: requests/s per core", per_core, "/s")
        self.figure("crud mix: p99", 1000 * common.percentile(ok, 0.99), "ms")
        self.figure("load generator CPU share (mix)", common.cpu_share(result.client_cpu_seconds, result), "%")
        for server_name, published in PUBLISHED_PER_VCPU.items():
            self.figure(f"mix per core / {server_name} per vCPU ({published:g})", per_core / published, "x")

    def measure_memory(self, when: str) -> None:
        rss = [common.rss_mib(pid) for pid in self.server.worker_pids()]
        print(f"  [{self.backend.name}] worker RSS {when}: {', '.join(f'{m:.0f}' for m in rss)} MiB")
        if when == "at start":
            self.figure("gunicorn worker RSS at start, max", max(rss, default=0.0), "MiB")
            return
        self.figure("gunicorn workers RSS, sum", sum(rss), "MiB")
        self.figure("gunicorn worker RSS, max", max(rss, default=0.0), "MiB",
                    f"< {RSS_TARGET_MIB} MiB", bool(rss) and max(rss) < RSS_TARGET_MIB)

    def measure_all(self) -> None:
        self.measure_memory("at start")
        self.seed_patients()
        create_rate = self.measure_creates()
        self.measure_reads("reads")
        self.measure_floor(create_rate)
        self.preload()
        self.figure("stored resources", len(self.patient_ids) + len(self.observation_ids))
        saturated = self.measure_reads(f"reads @{self.sizes.stored // 1000}k")
        self.measure_read_latency(f"reads @{self.sizes.stored // 1000}k, 4 paced clients", saturated)
        self.measure_mix()
        self.measure_memory("after the runs")
        self.figure("failed requests (all phases)", self.errors, "", "0", self.errors == 0)
        self.figure("CPU used outside the benchmark, worst phase", self.outside_cpu_worst, "%",
                    f"< {OUTSIDE_CPU_TARGET:g} %", self.outside_cpu_worst < OUTSIDE_CPU_TARGET)


def bench_backend(name: str, sizes: Sizes, args, tree: Path = common.REPO_ROOT, revision: str | None = None,
                  auth: bool = False) -> list[Figure]:
    busy = common.wait_for_quiet_machine(args.wait_quiet, OUTSIDE_CPU_TARGET)
    if busy >= OUTSIDE_CPU_TARGET:
        print(f"  WARNING: the machine is {busy:.0f}% busy with other work: the figures will be low")
    workdir = Path(tempfile.mkdtemp(prefix=f"ehr-bench-{name}-"))
    opener = postgres_backend if name == "postgresql" else sqlite_backend
    try:
        with opener(workdir) as opened:
            backend = dataclasses.replace(opened, tree=tree, revision=revision, auth=auth)
            with running_server(backend, args.gunicorn_args) as (server, token):
                print(f"== {backend.label}: gunicorn on 127.0.0.1:{server.port}, workers {server.worker_pids()}")
                return measured(backend, server, token, sizes, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measured(backend: Backend, server: common.Server, token: str | None, sizes: Sizes, args) -> list[Figure]:
    run = Run(backend, server, token, sizes, args)
    try:
        run.measure_all()
    except Exception:
        print(f"gunicorn log tail:\n{server.log_tail()}")
        raise
    return run.figures


def gunicorn_descriptions(args) -> str:
    urls = {"postgresql": common.sqlalchemy_postgres_url(DATABASE_NAME), "sqlite": "sqlite:///ehr.db"}
    names = list(urls) if args.backend == "both" else [args.backend]
    return "; ".join(f"{name}: {common.gunicorn_description(urls[name])}" for name in names)


def print_report(machine: dict[str, str], figures: list[Figure], args) -> None:
    print("\n## Machine\n")
    for key, value in machine.items():
        print(f"- {key}: {value}")
    print(f"- load: {args.processes} client processes x {args.threads} threads "
          f"({args.processes * args.threads} keep-alive clients; "
          f"{LATENCY_CLIENTS[0] * LATENCY_CLIENTS[1]} paced to {LATENCY_LOAD_SHARE:.0%} of the saturated rate for read latency); {gunicorn_descriptions(args)} "
          f"{args.gunicorn_args}".rstrip())
    print("\n## Results\n")
    print("\n".join(common.table_lines(figures)))


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test (< 1 min)")
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--processes", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="client threads per process (default 8)")
    parser.add_argument("--requests", type=int, help="requests per measured phase")
    parser.add_argument("--stored", type=int, help="resources stored before the read-at-size phase")
    parser.add_argument("--gunicorn-args", default="", help="extra gunicorn options to try, e.g. '--threads 4'")
    parser.add_argument("--compare", metavar="REV", help="also run the server code of git revision REV (checked out into a "
                        "temporary worktree, with this .venv), back to back per backend, and print HEAD/REV ratios")
    parser.add_argument("--auth", action="store_true", help="run each backend with EHR_AUTH off and on (a clinician's token on "
                        "every request), back to back, and print on/off ratios")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each backend, wait up to this long for other work on the machine to stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped to a file
    base = QUICK if args.quick else FULL
    sizes = Sizes(args.requests or base.requests, args.stored or base.stored, base.patients)
    machine = common.describe_machine()
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    figures: list[Figure] = []
    with contextlib.ExitStack() as stack:
        other = stack.enter_context(common.checked_out(args.compare)) if args.compare else None
        for name in backends:
            if other:
                figures += bench_backend(name, sizes, args, other, args.compare)
            if args.auth:
                figures += bench_backend(name, sizes, args, revision="auth off")
            figures += bench_backend(name, sizes, args, revision="HEAD" if other else "auth on" if args.auth else None, auth=args.auth)
    print_report(machine, figures, args)
    if args.compare:
        print("\n## HEAD / " + args.compare + "\n")
        print("\n".join(common.ratio_lines(figures, "HEAD", args.compare)))
    if args.auth:
        print("\n## auth on / auth off\n")
        print("\n".join(common.ratio_lines(figures, "auth on", "auth off")))
    return 0  # a MISS is a figure to act on, not a failure of the script


if __name__ == "__main__":
    sys.exit(main())
