"""What one REST create costs: CPU, statements and round trips in-process, and worker CPU under gunicorn.

For each backend, on a fresh database migrated with `ehr db upgrade`:

- in-process, in a subprocess running the code of the tree under test: build the app (app.web.create_app), PUT a
  few patients, warm up, then POST N vital-sign Observations (bench/crud.py's generator) by calling the WSGI
  callable directly, and divide the process's CPU time (time.process_time) by N. A second, shorter pass counts what
  each create sends to the database: statements (SQLAlchemy cursor executions, COPY streams issued with psycopg's
  cursor.copy, COMMITs) and, on PostgreSQL, round trips, read from libpq's protocol trace (every Query, Sync and
  CopyDone the client sends and then waits on). The counting pass is apart because its instruments cost CPU.
- under gunicorn (the tree's gunicorn.conf.py, or the flags bench/common.py ran older trees with), 16 keep-alive
  clients POST the same Observations; the workers' CPU time (from /proc) per create, and its ratio to the in-process
  figure. Both parts also count context switches per create, where most of the difference between them goes.

    .venv/bin/python bench/create_cost.py [--backend sqlite|postgresql|both] [--creates N] [--quick] [--compare REV]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import random
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)
from common import Figure  # noqa: E402
from crud import create_jobs, dumps, patient  # noqa: E402

DATABASE_PREFIX = "bench_h1_create"
PATIENTS = 20
CLIENTS = (2, 8)  # processes x threads: 16 keep-alive clients, as bench/crud.py
CPU_TARGET_MS = 1.2
STATEMENTS_TARGET = 2  # per create, on PostgreSQL
ROUND_TRIPS_TARGET = 2
GUNICORN_RATIO_TARGET = 1.5
RESULT_PREFIX = "RESULT "


@dataclass(frozen=True)
class Sizes:
    creates: int  # measured, in-process and under gunicorn
    warmup: int
    counted: int  # creates of the counting pass


FULL = Sizes(creates=2_000, warmup=300, counted=200)
QUICK = Sizes(creates=300, warmup=100, counted=50)


# --- in-process: runs in a subprocess whose PYTHONPATH starts with the tree under test -----------------

def wsgi_environ(method: str, path: str, body: bytes | None) -> dict:
    """The environ a WSGI server would pass for this request, with the headers bench/common.py's client sends."""
    body = body or b""
    return {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/fhir+json", "CONTENT_LENGTH": str(len(body)), "HTTP_ACCEPT": "application/fhir+json",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def call_app(app, job: tuple) -> int:
    """One request through the WSGI callable, its body read to the end; returns the status code."""
    _, method, path, body = job
    statuses = []
    chunks = app(wsgi_environ(method, path, body), lambda status, headers, exc_info=None: statuses.append(status))
    try:
        b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return int(statuses[0].split()[0])


def timed_creates(app, jobs: list[tuple]) -> tuple[float, int, int]:
    """(CPU seconds of this process, context switches, failed requests) over `jobs`."""
    started, switches = time.process_time(), own_context_switches()
    statuses = [call_app(app, job) for job in jobs]
    cpu, switched = time.process_time() - started, own_context_switches() - switches
    return cpu, switched, sum(not common.is_success(s) for s in statuses)


def own_context_switches() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def measure_in_process(sizes: Sizes, seed: int) -> dict:
    """The in-process figures of the code on sys.path, on the database of EHR_DATABASE_URL (see the module docstring)."""
    from app.web import create_app
    app = create_app()
    rng = random.Random(seed)
    patient_ids = [f"bench-patient-{n:04d}" for n in range(PATIENTS)]
    for pid in patient_ids:
        call_app(app, ("patient", "PUT", f"/fhir/Patient/{pid}", dumps(patient(pid, rng))))
    warmup, measured, counted = (create_jobs(rng, n, patient_ids) for n in (sizes.warmup, sizes.creates, sizes.counted))
    timed_creates(app, warmup)
    cpu, switches, failed = timed_creates(app, measured)
    with tempfile.TemporaryDirectory(prefix="ehr-bench-trace-") as trace_dir:
        counter = common.StatementCounter(app.extensions["ehr.engine"], Path(trace_dir) / "pq.trace")
        with counter.installed():
            _, _, count_failed = timed_creates(app, counted)
        trace = counter.trace_counts()
    return {"cpu_ms": 1000 * cpu / len(measured), "switches": switches / len(measured), "failed": failed + count_failed,
            "statements": counter.statements() / len(counted), "kinds": dict(counter.kinds),
            "round_trips": common.round_trips(trace) / len(counted) if trace else None,
            "trace": dict(trace), "counted": len(counted)}


def in_process_main(args) -> int:
    """Entry of the subprocess: print the figures as one JSON line."""
    result = measure_in_process(Sizes(args.creates, args.warmup, args.counted), args.seed)
    print(RESULT_PREFIX + json.dumps(result))
    return 0


def run_in_process(env: dict[str, str], sizes: Sizes, seed: int) -> dict:
    """measure_in_process in a subprocess running the code of env's tree (first on its PYTHONPATH)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--in-process", "--creates", str(sizes.creates), "--warmup", str(sizes.warmup), "--counted", str(sizes.counted),
               "--seed", str(seed)]
    done = subprocess.run(command, cwd=common.code_tree(env), env=env, capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"in-process measurement failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


# --- under gunicorn -----------------------------------------------------------------------------

def measure_gunicorn(env: dict[str, str], workdir: Path, sizes: Sizes, args, label: str) -> dict:
    rng = random.Random(args.seed)
    patient_ids = [f"bench-patient-{n:04d}" for n in range(PATIENTS)]
    server = common.start_gunicorn(env, workdir / f"gunicorn-{label.replace(' ', '_')}.log",
                                   tuple(shlex.split(args.gunicorn_args)))
    try:
        common.wait_until_ready(server)
        print(f"  [{label}] gunicorn {' '.join(server.process.args[1:])}, workers {server.worker_pids()}")
        load = functools.partial(common.run_load, functools.partial(common.HttpSession, server.port))
        load([("patient", "PUT", f"/fhir/Patient/{pid}", dumps(patient(pid, rng))) for pid in patient_ids], 1, 4)
        load(create_jobs(rng, sizes.warmup, patient_ids), *CLIENTS)
        switches = sum(map(common.context_switches, server.worker_pids()))
        result = load(create_jobs(rng, sizes.creates, patient_ids), *CLIENTS, server=server)
        switches = sum(map(common.context_switches, server.worker_pids())) - switches
    except Exception:
        print(f"gunicorn log tail:\n{server.log_tail()}")
        raise
    finally:
        common.stop_server(server)
    print(f"  [{label}] {common.phase_line(result, 'create')}")
    print(f"  [{label}] {common.cpu_line(result)}")
    done = sum(common.is_success(r.status) for r in result.records)
    return {"worker_cpu_ms": 1000 * result.server_cpu_seconds / max(1, done), "failed": len(result.records) - done,
            "rate": done / result.wall_seconds if result.wall_seconds else 0.0,
            "client_cpu_ms": 1000 * result.client_cpu_seconds / max(1, done), "switches": switches / max(1, done)}


# --- one backend, one tree ----------------------------------------------------------------------

def bench_tree(backend: str, tree: Path, label: str, sizes: Sizes, args, workdir: Path) -> list[Figure]:
    tag = "".join(c if c.isalnum() else "_" for c in label).lower()
    with common.fresh_database(backend, workdir, f"{DATABASE_PREFIX}_{tag}") as url:
        env = common.server_env(url, tree)
        common.run_ehr(["db", "upgrade"], env)
        in_process = run_in_process(env, sizes, args.seed)
        print_in_process(label, in_process)
        served = measure_gunicorn(env, workdir, sizes, args, label) if not args.no_gunicorn else None
    return figures_of(backend, label, in_process, served)


def print_in_process(label: str, result: dict) -> None:
    kinds = ", ".join(f"{kind} {n / result['counted']:g}" for kind, n in sorted(result["kinds"].items()))
    print(f"  [{label}] in-process: {result['cpu_ms']:.3f} ms CPU per create; statements per create: {kinds}")
    if result["trace"]:
        trace = ", ".join(f"{kind} {n / result['counted']:g}" for kind, n in sorted(result["trace"].items()))
        print(f"  [{label}] libpq trace per create: {trace}")


def figures_of(backend: str, label: str, in_process: dict, served: dict | None) -> list[Figure]:
    postgres = backend == "postgresql"
    cpu = in_process["cpu_ms"]
    figures = [
        Figure("in-process CPU per create", label, cpu, "ms", f"<= {CPU_TARGET_MS} ms", cpu <= CPU_TARGET_MS),
        Figure("in-process context switches per create", label, in_process["switches"], ""),
        Figure("statements per create", label, in_process["statements"], "",
               f"<= {STATEMENTS_TARGET}" if postgres else "—", in_process["statements"] <= STATEMENTS_TARGET if postgres else None),
    ]
    if postgres:
        trips = in_process["round_trips"]
        figures.append(Figure("round trips per create", label, trips, "", f"<= {ROUND_TRIPS_TARGET}",
                              trips is not None and trips <= ROUND_TRIPS_TARGET))
    if served:
        ratio = served["worker_cpu_ms"] / cpu if cpu else None
        figures += [
            Figure("gunicorn worker CPU per create", label, served["worker_cpu_ms"], "ms"),
            Figure("gunicorn / in-process CPU", label, ratio, "x", f"<= {GUNICORN_RATIO_TARGET}",
                   ratio is not None and ratio <= GUNICORN_RATIO_TARGET),
            Figure("gunicorn worker context switches per create", label, served["switches"], ""),
            Figure("gunicorn creates/s (16 clients)", label, served["rate"], "/s"),
            Figure("load generator CPU per create", label, served["client_cpu_ms"], "ms"),
        ]
    failed = in_process["failed"] + (served["failed"] if served else 0)
    figures.append(Figure("failed creates", label, failed, "", "0", failed == 0))
    return figures


def bench_backend(backend: str, trees: list[tuple[Path, str]], sizes: Sizes, args) -> list[Figure]:
    busy = common.wait_for_quiet_machine(args.wait_quiet)
    if busy >= common.QUIET_BUSY_PERCENT:
        print(f"  WARNING: the machine is {busy:.0f}% busy with other work: the figures will be high")
    workdir = Path(tempfile.mkdtemp(prefix=f"ehr-bench-create-{backend}-"))
    figures: list[Figure] = []
    try:
        for tree, revision in trees:
            label = f"{backend} @ {revision}" if revision else backend
            figures += bench_tree(backend, tree, label, sizes, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def print_report(figures: list[Figure], sizes: Sizes, args) -> None:
    print("\n## Machine\n")
    for key, value in common.describe_machine().items():
        print(f"- {key}: {value}")
    print(f"- {sizes.creates} creates measured after {sizes.warmup} of warm-up; statements and round trips counted "
          f"over {sizes.counted} more; gunicorn loaded by {CLIENTS[0] * CLIENTS[1]} keep-alive clients, with each tree's "
          f"gunicorn.conf.py or, before it, {' '.join(common.LEGACY_GUNICORN_OPTIONS)} {args.gunicorn_args}".rstrip())
    print("\n## Results\n")
    print("\n".join(common.table_lines(figures)))
    if args.compare:
        print(f"\n## HEAD / {args.compare}\n")
        print("\n".join(common.ratio_lines(figures, "HEAD", args.compare)))


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--creates", type=int, help=f"creates measured per phase (default {FULL.creates})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.creates} creates, for a smoke test")
    parser.add_argument("--compare", metavar="REV", help="also run the server code of git revision REV (checked out into "
                        "a temporary worktree, with this .venv), back to back per backend, and print HEAD/REV ratios")
    parser.add_argument("--no-gunicorn", action="store_true", help="in-process figures only")
    parser.add_argument("--gunicorn-args", default="", help="gunicorn options to try over the tree's gunicorn.conf.py, "
                        "e.g. '--threads 4' or '--access-logfile -'")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each backend, wait up to this long for other work on the machine to stop")
    parser.add_argument("--seed", type=int, default=20240101, help=argparse.SUPPRESS)
    # The in-process measurement's own subprocess (see run_in_process).
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--counted", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.in_process:
        return in_process_main(args)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped to a file
    base = QUICK if args.quick else FULL
    sizes = Sizes(args.creates or base.creates, base.warmup, min(base.counted, args.creates or base.counted))
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    figures: list[Figure] = []
    with contextlib.ExitStack() as stack:
        trees = [(common.REPO_ROOT, None)]
        if args.compare:
            trees = [(stack.enter_context(common.checked_out(args.compare)), args.compare), (common.REPO_ROOT, "HEAD")]
        for backend in backends:
            figures += bench_backend(backend, trees, sizes, args)
    print_report(figures, sizes, args)
    return 0  # a MISS is a figure to act on, not a failure of the script


if __name__ == "__main__":
    sys.exit(main())
