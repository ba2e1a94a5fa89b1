"""Search benchmark on PostgreSQL: a generated data set at two scales, its load rate, and the
latency and throughput of a fixed mix of searches.

For each scale (number of Observations; 20,000 patients at every scale): bench/gen.py data, a
fresh database, `ehr db upgrade`, `ehr load` in parallel processes over split files (the rate
includes writing the search index rows), VACUUM ANALYZE, gunicorn as gunicorn.conf.py runs it,
then per query: max throughput from 16 clients, and latency from 4 clients paced to half that
rate (so that p99 is service time rather than queueing). Then the p99 ratio of the larger
scale to the smaller one per query, and EXPLAIN (ANALYZE, BUFFERS) of the slow queries, with
both the custom and the generic plan. The database is dropped at the end.

    .venv/bin/python bench/search.py [--scales 100000,1000000] [--fallback-scale 300000]
                                     [--budget-minutes 35] [--wait-quiet 300] [--quick]

When the larger scale would take longer than --budget-minutes (estimated from the first scale's
load rate), the fallback scale runs instead and the report says so. docs/benchmarks.md explains
each figure.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import math
import os
import random
import re
import resource as rusage
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import orjson
import psycopg
import psycopg.sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)
import gen  # noqa: E402
from common import Figure  # noqa: E402

DATABASE_NAME = "ehr_bench_search"
LOAD_RATE_TARGET = 3_000  # resources/s, index rows included
RATIO_TARGET = 1.5  # p99 at the larger scale / p99 at the smaller one
SLOW_MS = 50  # informational queries slower than this at p99 get an EXPLAIN too
THROUGHPUT_CLIENTS = (2, 8)  # processes x threads
LATENCY_CLIENTS = (2, 2)
LATENCY_LOAD_SHARE = 0.5  # latency is measured at this share of the query's max throughput
PHASE_SECONDS = 30  # a phase stops after this long even if requests remain: slow queries get fewer samples
PAGING_STARTS = 8  # distinct searches walked to page 20
DEEP_PAGE = 20
HEART_RATE = "http://loinc.org|8867-4"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")  # psycopg's %(name)s
EXPLAIN_LINES = 45  # per statement: enough for the plan's shape, without 500 lines of BitmapOr


# --- the query mix ------------------------------------------------------------------------

def fhir_path(type_name: str, pairs: list[tuple[str, str]]) -> str:
    return f"/fhir/{type_name}?" + urlencode(pairs, quote_via=quote, safe=":/")


@dataclass(frozen=True)
class Population:
    """What the queries pick from: the generated patients, and the prefixes of their names."""
    patients: int

    def patient(self, rng: random.Random) -> int:
        return rng.randrange(self.patients)

    @staticmethod
    def family(rng: random.Random) -> str:
        return gen.folded(rng.choice(gen.FAMILY_NAMES))


def patient_heart_rates_since_2024(rng: random.Random, people: Population) -> str:
    return fhir_path("Observation", [("subject", f"Patient/{gen.patient_id(people.patient(rng))}"),
                                     ("code", HEART_RATE), ("date", "ge2024-01-01")])


def patient_name_prefix(rng: random.Random, people: Population) -> str:
    return fhir_path("Patient", [("name", people.family(rng)[:3])])


def chain_on_identifier(rng: random.Random, people: Population) -> str:
    mrn = gen.mrn(people.patient(rng))
    return fhir_path("Observation", [("subject:Patient.identifier", f"{gen.MRN_SYSTEM}|{mrn}"), ("code", "8867-4")])


def chain_on_name(rng: random.Random, people: Population) -> str:
    return fhir_path("Observation", [("subject:Patient.name", people.family(rng)), ("code", "8867-4")])


def latest_heart_rates(rng: random.Random, people: Population) -> str:
    return fhir_path("Observation", [("subject", f"Patient/{gen.patient_id(people.patient(rng))}"),
                                     ("code", HEART_RATE), ("_sort", "-date"), ("_count", "10")])


def paging_start(n: int) -> str:
    return fhir_path("Observation", [("code", HEART_RATE), ("date", f"ge{2021 + n // 4}-{1 + 3 * (n % 4):02d}-01"),
                                     ("_count", "50")])


def page_one(rng: random.Random, people: Population) -> str:
    return paging_start(rng.randrange(PAGING_STARTS))


def include_subject(rng: random.Random, people: Population) -> str:
    day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return fhir_path("Observation", [("code", "85354-9"), ("date", f"ge{day}"), ("_include", "Observation:subject")])


def reverse_chain(rng: random.Random, people: Population) -> str:
    return fhir_path("Patient", [("_has:Observation:patient:component-code-value-quantity",
                                  f"http://loinc.org|8480-6$gt{rng.randint(160, 185)}")])


def composite(rng: random.Random, people: Population) -> str:
    return fhir_path("Observation", [("component-code-value-quantity", "8480-6$gt140")])


def total_accurate(rng: random.Random, people: Population) -> str:
    return fhir_path("Observation", [("subject", f"Patient/{gen.patient_id(people.patient(rng))}"),
                                     ("_total", "accurate")])


@dataclass(frozen=True)
class QueryKind:
    key: str
    description: str
    target_ms: float | None  # p99 target; None: informational
    paths: object  # (rng, Population) -> one request path; None for the deep pages, walked at run time


QUERIES = [
    QueryKind("a", "Observation?subject=Patient/X&code=loinc|8867-4&date=ge2024-01-01", 30, patient_heart_rates_since_2024),
    QueryKind("b", "Patient?name=<3-letter prefix>", 50, patient_name_prefix),
    QueryKind("c1", "Observation?subject:Patient.identifier=<mrn system>|<mrn>&code=8867-4", 50, chain_on_identifier),
    QueryKind("c2", "Observation?subject:Patient.name=<family>&code=8867-4", 50, chain_on_name),
    QueryKind("latest", "Observation?subject=Patient/X&code=loinc|8867-4&_sort=-date&_count=10", None, latest_heart_rates),
    QueryKind("page1", "Observation?code=loinc|8867-4&date=geD&_count=50, page 1", None, page_one),
    QueryKind("page20", "the same searches, page 20 via next links", None, None),
    QueryKind("include", "Observation?code=85354-9&date=geD&_include=Observation:subject", None, include_subject),
    QueryKind("has", "Patient?_has:Observation:patient:component-code-value-quantity=loinc|8480-6$gtN", None, reverse_chain),
    QueryKind("composite", "Observation?component-code-value-quantity=8480-6$gt140", None, composite),
    QueryKind("total", "Observation?subject=Patient/X&_total=accurate", None, total_accurate),
]


# --- a plain client for the untimed requests (walking next links, checking answers) ----------

def get_bundle(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("GET", path, headers={"Accept": "application/fhir+json"})
        response = conn.getresponse()
        return response.status, orjson.loads(response.read() or b"{}")
    finally:
        conn.close()


def next_path(bundle: dict) -> str | None:
    for link in bundle.get("link") or []:
        if link.get("relation") == "next":
            parts = urlsplit(link["url"])
            return f"{parts.path}?{parts.query}"
    return None


def deep_pages(port: int) -> list[str]:
    """The page-20 URLs of the paging searches, reached by following their next links."""
    found = []
    for n in range(PAGING_STARTS):
        path = paging_start(n)
        for _ in range(DEEP_PAGE - 1):
            status, bundle = get_bundle(port, path)
            path = next_path(bundle) if status == 200 else None
            if path is None:
                break
        if path:
            found.append(path)
    return found


def describe_answer(port: int, path: str) -> str:
    """One untimed request: its status, matches, included resources and total, as a sanity check."""
    status, bundle = get_bundle(port, path)
    if status != 200:
        issue = (bundle.get("issue") or [{}])[0].get("diagnostics", "")
        return f"HTTP {status}: {issue[:200]}"
    entries = bundle.get("entry") or []
    included = sum(1 for e in entries if (e.get("search") or {}).get("mode") == "include")
    total = f", total {bundle['total']}" if "total" in bundle else ""
    more = ", has next" if next_path(bundle) else ""
    return f"{len(entries) - included} matches, {included} included{total}{more}"


# --- loading --------------------------------------------------------------------------------

@dataclass
class LoadOutcome:
    resources: int
    seconds: float
    loader_cpu: float
    postgres_cpu: float
    busy_share: float
    vacuum_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def split_ndjson(path: Path, parts: int, block: int = 500) -> list[Path]:
    """Deal the lines out to `parts` files in blocks (one `ehr load` batch each)."""
    outputs = [path.with_name(f"{path.stem}.part{n}.ndjson") for n in range(parts)]
    files = [out.open("wb", buffering=1 << 20) for out in outputs]
    with path.open("rb") as lines:
        for number, line in enumerate(lines):
            files[(number // block) % parts].write(line)
    for file in files:
        file.close()
    path.unlink()
    return outputs


def load_dataset(files: gen.NdjsonFiles, parts: int, env: dict[str, str], workdir: Path) -> LoadOutcome:
    """Load every file with `parts` parallel `ehr load` processes; time it and account the CPU."""
    by_part = list(zip(*(split_ndjson(files.paths[name], parts) for name in gen.NdjsonFiles.TYPES)))
    children_before = children_cpu_seconds()
    postgres_before, (busy_before, total_before) = common.postgres_cpu_seconds(), common.machine_busy_ticks()
    started = time.monotonic()
    run_loaders([["load", *map(str, part)] for part in by_part], env, workdir)
    seconds = time.monotonic() - started
    busy_after, total_after = common.machine_busy_ticks()
    return LoadOutcome(
        resources=sum(files.counts.values()), seconds=seconds,
        loader_cpu=children_cpu_seconds() - children_before,
        postgres_cpu=common.postgres_cpu_seconds() - postgres_before,
        busy_share=(busy_after - busy_before) / max(1, total_after - total_before),
    )


def run_loaders(commands: list[list[str]], env: dict[str, str], workdir: Path) -> None:
    """Run the `ehr load` commands at once, printing the stored count each minute; raise if one fails."""
    logs = [workdir / f"load-{n}.log" for n in range(len(commands))]
    processes = []
    for args, log in zip(commands, logs):
        with log.open("wb") as out:
            processes.append(subprocess.Popen([str(common.VENV_BIN / "ehr"), *args], cwd=common.REPO_ROOT, env=env,
                                              stdout=out, stderr=subprocess.DEVNULL))
    started, reported = time.monotonic(), time.monotonic()
    while any(p.poll() is None for p in processes):
        time.sleep(1)
        if time.monotonic() - reported >= 60:
            reported = time.monotonic()
            stored = stored_resources()
            print(f"    {stored:,} stored after {reported - started:.0f} s ({stored / (reported - started):,.0f}/s)")
    failed = [f"ehr {' '.join(a)} -> {p.returncode}: {log.read_text()[-2000:]}"
              for a, p, log in zip(commands, processes, logs) if p.returncode != 0]
    if failed:
        raise RuntimeError("ehr load failed:\n" + "\n".join(failed))


def stored_resources() -> int:
    with psycopg.connect(common.postgres_dsn(DATABASE_NAME)) as conn:
        return conn.execute("SELECT coalesce(max(pk), 0) FROM resource").fetchone()[0]


def children_cpu_seconds() -> float:
    usage = rusage.getrusage(rusage.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def vacuum_analyze() -> float:
    """What autovacuum does soon after a bulk load: fresh planner statistics and visibility map."""
    started = time.monotonic()
    with psycopg.connect(common.postgres_dsn(DATABASE_NAME), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return time.monotonic() - started


# --- EXPLAIN of a search, statement by statement ---------------------------------------------------

def explain_search(path: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of every SQL statement the server runs for this search path, with
    the custom plan the server uses (make_engine forces it) and, for comparison, the generic plan
    that PostgreSQL would otherwise switch to once psycopg has prepared the statement."""
    sys.path.insert(0, str(common.REPO_ROOT))
    from urllib.parse import parse_qsl

    from sqlalchemy import event

    from app.search.service import run_search, search_request
    from app.store.db import make_engine

    engine = make_engine(common.sqlalchemy_postgres_url(DATABASE_NAME))
    statements: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, parameters, _ctx, _many: statements.append((statement, parameters)))
    parts = urlsplit(path)
    type_name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    request, _ = search_request(type_name, parse_qsl(parts.query, keep_blank_values=True), False, 50, 1000)
    lines = []
    with engine.connect() as connection:
        run_search(connection, request)
        captured = list(statements)
        raw = connection.connection.dbapi_connection
        for statement, parameters in captured:
            lines.append(f"-- {' '.join(statement.split())[:600]}")
            lines += ["-- custom plan (the one the server uses):", *plan_lines(raw, f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)]
            lines += ["-- generic plan (prepared statement):", *generic_plan_lines(raw, statement, parameters)]
        connection.rollback()
    engine.dispose()
    return lines


def plan_lines(raw, explain: str, parameters) -> list[str]:
    plan = [row[0] for row in raw.execute(explain, parameters)]
    shown = plan if len(plan) <= EXPLAIN_LINES else [*plan[:EXPLAIN_LINES - 3], "...", *plan[-2:]]
    return [line[:240] for line in shown]


def generic_plan_lines(raw, statement: str, parameters: dict) -> list[str]:
    """PREPARE the statement with $n placeholders and EXPLAIN EXECUTE it under force_generic_plan."""
    names: list[str] = []

    def number(match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    raw.execute("PREPARE bench_generic AS " + PLACEHOLDER.sub(number, statement))
    values = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(parameters[name]) for name in names)
    explain = psycopg.sql.SQL("EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_generic({})").format(values)
    try:
        raw.execute("SET plan_cache_mode = force_generic_plan")
        return plan_lines(raw, explain.as_string(raw), None)
    except psycopg.Error as error:
        raw.rollback()
        return [f"generic plan failed: {error}"]
    finally:
        raw.execute("RESET plan_cache_mode")
        raw.execute("DEALLOCATE bench_generic")


# --- one scale ---------------------------------------------------------------------------------------

@dataclass
class ScaleResult:
    label: str
    observations: int
    load: LoadOutcome
    encounters: int
    query_seconds: float = 0.0
    p50: dict[str, float] = field(default_factory=dict)
    p99: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    failures: int = 0
    outside_worst: float = 0.0
    explains: dict[str, list[str]] = field(default_factory=dict)


def scale_label(observations: int) -> str:
    return f"{observations // 1_000_000}M" if observations % 1_000_000 == 0 else f"{observations // 1000}k"


class ScaleRun:
    """Generate, load and query one scale on a fresh database."""

    def __init__(self, observations: int, args, workdir: Path):
        self.observations, self.args, self.workdir = observations, args, workdir
        self.label = scale_label(observations)
        self.env = common.server_env(common.sqlalchemy_postgres_url(DATABASE_NAME))
        self.rng = random.Random(args.seed)
        self.people = Population(args.patients)

    def run(self) -> ScaleResult:
        files = self.generate()
        common.wait_for_quiet_machine(self.args.wait_quiet)
        common.create_database(DATABASE_NAME)
        try:
            common.run_ehr(["db", "upgrade"], self.env)
            load = self.load(files)
            result = ScaleResult(self.label, self.observations, load, files.counts["Encounter"])
            started = time.monotonic()
            with self.server() as server:
                self.measure_queries(server, result)
            result.query_seconds = time.monotonic() - started
            return result
        finally:
            common.drop_database(DATABASE_NAME)

    def generate(self) -> gen.NdjsonFiles:
        started = time.monotonic()
        files = gen.generate(self.workdir / "data", self.args.patients, self.observations, self.args.seed)
        counts = ", ".join(f"{files.counts[n]:,} {n}" for n in gen.NdjsonFiles.TYPES)
        print(f"[{self.label}] generated {counts} in {time.monotonic() - started:.1f} s")
        return files

    def load(self, files: gen.NdjsonFiles) -> LoadOutcome:
        print(f"[{self.label}] loading {sum(files.counts.values()):,} resources with {self.args.loaders} "
              f"parallel `ehr load` processes")
        load = load_dataset(files, self.args.loaders, self.env, self.workdir)
        load.vacuum_seconds = vacuum_analyze()
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        share = 100 / (load.seconds * (os.cpu_count() or 1))
        print(f"[{self.label}] loaded {load.resources:,} in {load.seconds:.0f} s = {load.rate:,.0f} resources/s; "
              f"CPU of {os.cpu_count()} cores: ehr load {share * load.loader_cpu:.0f}%, postgres "
              f"{share * load.postgres_cpu:.0f}%, machine busy {100 * load.busy_share:.0f}%; "
              f"VACUUM ANALYZE {load.vacuum_seconds:.0f} s")
        return load

    @contextlib.contextmanager
    def server(self):
        server = common.start_gunicorn(self.env, self.workdir / f"gunicorn-{self.label}.log")
        try:
            common.wait_until_ready(server)
            yield server
        finally:
            common.stop_server(server)

    def measure_queries(self, server: common.Server, result: ScaleResult) -> None:
        paths = self.query_paths(server.port)
        for kind in QUERIES:
            answer = describe_answer(server.port, paths[kind.key][0]) if paths[kind.key] else "no path"
            print(f"[{self.label}] {kind.key:<9} {kind.description}: {answer}")
        self.http_load(server, [(k, "GET", p, None) for k, ps in paths.items() for p in ps[:30]],
                       THROUGHPUT_CLIENTS, "warm-up", result)
        for kind in QUERIES:
            if not paths[kind.key]:
                continue
            common.wait_for_quiet_machine(self.args.wait_quiet)
            self.measure_throughput(server, kind, paths[kind.key], result)
            self.measure_latency(server, kind, paths[kind.key], result)
        self.explain_slow_queries(paths, result)

    def query_paths(self, port: int) -> dict[str, list[str]]:
        """Request paths per query kind: many distinct ones where the kind has a random part."""
        paths = {kind.key: [kind.paths(self.rng, self.people) for _ in range(self.args.requests)]
                 for kind in QUERIES if kind.paths}
        paths["page20"] = deep_pages(port)
        return paths

    def pick(self, paths: list[str], count: int) -> list[str]:
        return [paths[n % len(paths)] for n in range(count)] if paths else []

    def measure_throughput(self, server: common.Server, kind: QueryKind, paths: list[str], result: ScaleResult) -> None:
        jobs = [(kind.key, "GET", p, None) for p in self.pick(paths, self.args.requests)]
        run = self.http_load(server, jobs, THROUGHPUT_CLIENTS, "throughput", result, max_seconds=PHASE_SECONDS)
        result.throughput[kind.key] = len([r for r in run.records if common.is_success(r.status)]) / run.wall_seconds

    def measure_latency(self, server: common.Server, kind: QueryKind, paths: list[str], result: ScaleResult) -> None:
        """4 clients paced to half the query's max throughput: p99 is service time, not queueing."""
        jobs = [(kind.key, "GET", p, None) for p in self.pick(paths, self.args.requests)]
        rate = LATENCY_LOAD_SHARE * result.throughput[kind.key]
        run = self.http_load(server, jobs, LATENCY_CLIENTS, f"@{rate:.0f}/s", result, rate, PHASE_SECONDS)
        ok = [r.seconds for r in run.records if common.is_success(r.status)]
        result.p50[kind.key], result.p99[kind.key] = 1000 * common.percentile(ok, .5), 1000 * common.percentile(ok, .99)
        result.outside_worst = max(result.outside_worst, common.outside_cpu_share(run))

    def http_load(self, server: common.Server, jobs: list[tuple], clients: tuple[int, int], label: str,
                  result: ScaleResult, rate: float | None = None, max_seconds: float = math.inf) -> common.LoadResult:
        run = common.run_load(functools.partial(common.HttpSession, server.port), jobs, *clients, server, rate,
                              max_seconds)
        failures = [r for r in run.records if not common.is_success(r.status)]
        result.failures += len(failures)
        for kind in sorted({r.kind for r in run.records}) if label != "warm-up" else []:
            print(f"  [{self.label}] {label:<10} {common.phase_line(run, kind)}")
        print(f"  [{self.label}] {label:<10} {common.cpu_line(run)}")
        if failures:
            print(f"  [{self.label}] {label:<10} {len(failures)} failed: "
                  f"{sorted({(r.kind, r.status) for r in failures})[:6]} {run.first_errors[:2]}")
        return run

    def explain_slow_queries(self, paths: dict[str, list[str]], result: ScaleResult) -> None:
        for kind in QUERIES:
            limit = kind.target_ms or SLOW_MS
            if result.p99.get(kind.key, 0) > limit and paths.get(kind.key):
                try:
                    result.explains[kind.key] = explain_search(paths[kind.key][0])
                except Exception as error:  # noqa: BLE001 - a diagnostic; the figures stand without it
                    result.explains[kind.key] = [f"EXPLAIN failed: {error!r}"[:500]]
                print(f"[{self.label}] EXPLAIN {kind.key} (p99 {result.p99[kind.key]:.1f} ms > {limit} ms):")
                print("\n".join(f"    {line}" for line in result.explains[kind.key]))


# --- the report ---------------------------------------------------------------------------------------

def scale_figures(result: ScaleResult, loaders: int) -> list[Figure]:
    label = f"{result.label} obs"
    figures = [
        Figure("resources loaded", label, result.load.resources, ""),
        Figure(f"load: resources/s ({loaders} x ehr load, index rows included)", label, result.load.rate, "/s",
               f">= {LOAD_RATE_TARGET:,}", result.load.rate >= LOAD_RATE_TARGET),
        Figure("load: wall time", label, result.load.seconds, "s"),
        Figure("VACUUM ANALYZE after the load", label, result.load.vacuum_seconds, "s"),
    ]
    for kind in QUERIES:
        if kind.key not in result.p99:
            continue
        target = f"< {kind.target_ms:g} ms" if kind.target_ms else "—"
        passed = result.p99[kind.key] < kind.target_ms if kind.target_ms else None
        figures += [
            Figure(f"{kind.key}: max throughput, 16 clients", label, result.throughput.get(kind.key), "/s"),
            Figure(f"{kind.key}: p50 at half that rate", label, result.p50[kind.key], "ms"),
            Figure(f"{kind.key}: p99 at half that rate", label, result.p99[kind.key], "ms", target, passed),
        ]
    figures += [
        Figure("failed requests", label, result.failures, "", "0", result.failures == 0),
        Figure("CPU used outside the benchmark, worst latency phase", label, result.outside_worst, "%",
               f"< {common.QUIET_BUSY_PERCENT:g} %", result.outside_worst < common.QUIET_BUSY_PERCENT),
    ]
    return figures


def ratio_figures(small: ScaleResult, large: ScaleResult) -> list[Figure]:
    label = f"{large.label}/{small.label}"
    figures = []
    for kind in QUERIES:
        if small.p99.get(kind.key) and large.p99.get(kind.key):
            ratio = large.p99[kind.key] / small.p99[kind.key]
            figures.append(Figure(f"{kind.key}: p99 ratio", label, ratio, "x", f"<= {RATIO_TARGET:g}", ratio <= RATIO_TARGET))
    return figures


def print_report(machine: dict[str, str], results: list[ScaleResult], notes: list[str], args) -> None:
    print("\n## Machine\n")
    for key, value in machine.items():
        print(f"- {key}: {value}")
    print(f"- data: {args.patients:,} patients, seed {args.seed}; load: {args.loaders} parallel `ehr load`; "
          f"{common.gunicorn_description(common.sqlalchemy_postgres_url(DATABASE_NAME))}; per query, max throughput from "
          f"{THROUGHPUT_CLIENTS[0] * THROUGHPUT_CLIENTS[1]} clients, then latency from {LATENCY_CLIENTS[0] * LATENCY_CLIENTS[1]} "
          f"clients paced to {LATENCY_LOAD_SHARE:.0%} of it; {args.requests} requests per query and phase, "
          f"or fewer when a phase reaches {PHASE_SECONDS} s")
    for note in notes:
        print(f"- NOTE: {note}")
    print("\n## Queries\n")
    for kind in QUERIES:
        print(f"- {kind.key}: {kind.description}")
    print("\n## Results\n")
    figures = [f for result in results for f in scale_figures(result, args.loaders)]
    if len(results) >= 2:
        figures += ratio_figures(results[0], results[-1])
    print("\n".join(common.table_lines(figures)))


def estimated_minutes(observations: int, first: ScaleResult, patients: int) -> float:
    """Minutes a scale would take, from the first scale's load rate (less 15% for a larger store)."""
    encounters = first.encounters * observations / first.observations
    resources = patients + gen.practitioner_count(patients) + encounters + observations
    grow = observations / first.observations
    seconds = resources / (0.85 * first.load.rate) + first.load.vacuum_seconds * grow + first.query_seconds * 1.2
    return (seconds + observations / 40_000) / 60  # generating runs at about 40,000 resources/s


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="100000,1000000", help="observation counts, smallest first")
    parser.add_argument("--fallback-scale", type=int, default=300_000,
                        help="run this instead of a later scale that would exceed --budget-minutes")
    parser.add_argument("--budget-minutes", type=float, default=35)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loaders", type=int, default=os.cpu_count() or 1, help="parallel `ehr load` processes")
    parser.add_argument("--requests", type=int, default=500, help="requests per query in each phase")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each measured phase, wait up to this long for other work on the machine to stop")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.scales, args.patients, args.requests, args.fallback_scale = "5000,10000", 500, 60, 8000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    started = time.monotonic()
    machine = common.describe_machine()
    scales = [int(s) for s in args.scales.split(",")]
    results: list[ScaleResult] = []
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="ehr-bench-search-"))
    try:
        for observations in scales:
            if results and estimated_minutes(observations, results[0], args.patients) > args.budget_minutes:
                minutes = estimated_minutes(observations, results[0], args.patients)
                notes.append(f"{scale_label(observations)} observations would take about {minutes:.0f} min "
                             f"(> {args.budget_minutes:g} min budget) at the measured load rate: "
                             f"ran {scale_label(args.fallback_scale)} instead")
                print(f"NOTE: {notes[-1]}")
                observations = args.fallback_scale
            results.append(ScaleRun(observations, args, workdir).run())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    notes.append(f"total wall time {(time.monotonic() - started) / 60:.1f} min")
    print_report(machine, results, notes, args)
    return 0  # a MISS is a figure to act on, not a failure of the script


if __name__ == "__main__":
    sys.exit(main())
