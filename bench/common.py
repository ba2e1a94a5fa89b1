"""Shared pieces of the benchmark scripts: the machine, the server under test,
the load generator and the report.

The load generator is deliberately lean, because it shares the machine's cores
with the server: a few forked client processes, each with a few threads, each
thread holding one keep-alive connection (HTTP or database) and pulling
prebuilt jobs from a queue. Every run reports how much CPU the clients took.
"""
from __future__ import annotations

import collections
import contextlib
import http.client
import math
import multiprocessing
import os
import random
import shutil
import resource
import runpy
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import orjson
import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TRANSIENT_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
CODE_TREE_VARIABLE = "EHR_BENCH_CODE_TREE"
LEGACY_GUNICORN_OPTIONS = ("-w", "2", "-k", "gthread", "--threads", "8")  # before gunicorn.conf.py
QUIET_BUSY_PERCENT = 15.0  # % of the cores used by other work: above it, figures are skewed


# --- the machine -------------------------------------------------------------

def describe_machine() -> dict[str, str]:
    """nproc, CPU model, memory and PostgreSQL version, for the report."""
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "memory": f"{mem_total_gib():.1f} GiB",
        "postgresql": postgres_version(),
        "python": sys.version.split()[0],
        "commit": code_version(),
    }


def code_version() -> str:
    """The commit under test, marked dirty when the work tree has changes."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def postgres_version() -> str:
    try:
        with psycopg.connect(postgres_dsn("postgres"), connect_timeout=5) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as exc:
        return f"unreachable ({exc.__class__.__name__})"


def machine_busy_share(seconds: float) -> float:
    """Share of all cores busy over the next `seconds`: other work that would skew the figures."""
    busy_before, total_before = machine_busy_ticks()
    time.sleep(seconds)
    busy_after, total_after = machine_busy_ticks()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def wait_for_quiet_machine(max_wait: float, busy_limit: float = QUIET_BUSY_PERCENT) -> float:
    """Wait (at most max_wait seconds) until other work leaves the cores nearly idle; returns busy %."""
    deadline = time.monotonic() + max_wait
    busy = 100 * machine_busy_share(2)
    while busy >= busy_limit and time.monotonic() < deadline:
        print(f"  machine {busy:.0f}% busy with other work; waiting for it to quiet down")
        busy = 100 * machine_busy_share(10)
    return busy


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


# --- PostgreSQL ---------------------------------------------------------------

def postgres_dsn(dbname: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def sqlalchemy_postgres_url(dbname: str) -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def create_database(dbname: str) -> None:
    """Create an empty database, dropping any leftover of an interrupted run."""
    drop_database(dbname)
    with psycopg.connect(postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')


def drop_database(dbname: str) -> None:
    with psycopg.connect(postgres_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


# --- the server under test -----------------------------------------------------

@contextlib.contextmanager
def fresh_database(backend: str, workdir: Path, name: str):
    """The URL of a new, empty database `name` of `backend`; a PostgreSQL one is dropped on exit."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.db'}"
        return
    create_database(name)
    try:
        yield sqlalchemy_postgres_url(name)
    finally:
        drop_database(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_url: str, tree: Path = REPO_ROOT, auth: bool = False) -> dict[str, str]:
    """The environment of the server and `ehr` commands, running the code of `tree` (a checkout of another revision,
    for a back-to-back comparison, or this one) with this checkout's .venv; without `auth`, EHR_AUTH=off (older
    revisions ignore it: they had no authorization)."""
    return {**os.environ, "EHR_DATABASE_URL": database_url, "EHR_AUTH": "on" if auth else "off", "PYTHONPATH": str(tree),
            CODE_TREE_VARIABLE: str(tree)}


def issued_token(env: dict[str, str], workdir: Path) -> str:
    """A year's token for a clinician (`user/*.cruds`, which reaches everything and is audited), made with the command
    line as an operator would: a Practitioner loaded, a login for it, a client, `ehr tokens issue`."""
    practitioner = workdir / "bench-practitioner.json"
    practitioner.write_bytes(orjson.dumps({"resourceType": "Practitioner", "id": "bench-clinician"}))
    run_ehr(["load", str(practitioner)], env)
    run_ehr(["users", "add", "--username", "bench", "--password-stdin", "--practitioner", "Practitioner/bench-clinician"], env,
            stdin="bench-password\n")
    client = orjson.loads(run_ehr(["clients", "add", "--name", "bench", "--redirect-uri", "http://127.0.0.1/cb", "--scope", "user/*.cruds",
                                   "--public"], env).stdout)
    issued = run_ehr(["tokens", "issue", "--username", "bench", "--client", client["client_id"], "--scope", "user/*.cruds",
                      "--expires-in", str(365 * 24 * 3600)], env)
    return orjson.loads(issued.stdout)["access_token"]


def code_tree(env: dict[str, str]) -> Path:
    """The checkout whose code `env` runs (see server_env): the working directory of its commands."""
    return Path(env.get(CODE_TREE_VARIABLE, REPO_ROOT))


@contextlib.contextmanager
def checked_out(revision: str):
    """`revision` checked out into a temporary git worktree (removed on exit), for running its code beside this one's,
    with its own package metadata (egg-info), which its commands find first on PYTHONPATH (server_env): its entry
    points, where the feeds plug in, may name modules other than this checkout's."""
    path = Path(tempfile.mkdtemp(prefix="ehr-bench-rev-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=REPO_ROOT, check=True, capture_output=True)
    try:
        metadata = subprocess.run([str(VENV_BIN / "python"), "-c", "from setuptools import setup; setup()", "-q", "egg_info"],
                                  cwd=path, capture_output=True, text=True)
        if metadata.returncode != 0:
            raise RuntimeError(f"The package metadata of {revision} could not be made:\n{metadata.stderr}")
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO_ROOT, capture_output=True)
        shutil.rmtree(path.parent, ignore_errors=True)


def run_ehr(args: list[str], env: dict[str, str], timeout: float = 1800, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the `ehr` command line; raise with its output if it fails."""
    done = subprocess.run([str(VENV_BIN / "ehr"), *args], cwd=code_tree(env), env=env,
                          capture_output=True, text=True, timeout=timeout, input=stdin)
    if done.returncode != 0:
        raise RuntimeError(f"ehr {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def run_ehr_in_parallel(commands: list[list[str]], env: dict[str, str], timeout: float = 3600) -> None:
    """Run several `ehr` commands at once (e.g. one `ehr load` per file); raise if any fails."""
    processes = [subprocess.Popen([str(VENV_BIN / "ehr"), *args], cwd=code_tree(env), env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for args in commands]
    failures = []
    for args, process in zip(commands, processes):
        output, _ = process.communicate(timeout=timeout)
        if process.returncode != 0:
            failures.append(f"ehr {' '.join(args)} failed ({process.returncode}):\n{output[-3000:]}")
    if failures:
        raise RuntimeError("\n".join(failures))


def ehr_has_command(name: str, env: dict[str, str]) -> bool:
    done = subprocess.run([str(VENV_BIN / "ehr"), name, "--help"], cwd=code_tree(env), env=env,
                          capture_output=True, timeout=60)
    return done.returncode == 0


@dataclass
class Server:
    """A running gunicorn master that we started, and where its log goes."""
    process: subprocess.Popen
    port: int
    log_path: Path

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def gunicorn_settings(tree: Path) -> list[str]:
    """The tree's production settings (its gunicorn.conf.py), or for a revision from before that file the options the
    benchmarks passed then: a revision is measured as it would have been run."""
    config = tree / "gunicorn.conf.py"
    return ["-c", str(config)] if config.exists() else list(LEGACY_GUNICORN_OPTIONS)


def gunicorn_description(database_url: str, tree: Path = REPO_ROOT) -> str:
    """How the tree's gunicorn runs on `database_url`, for a report: the workers and their class and threads, which its
    gunicorn.conf.py may choose by database (EHR_DATABASE_URL), on this machine."""
    config = tree / "gunicorn.conf.py"
    if not config.exists():
        return "gunicorn " + " ".join(LEGACY_GUNICORN_OPTIONS)
    with mock.patch.dict(os.environ, {"EHR_DATABASE_URL": database_url}):
        settings = runpy.run_path(str(config))
    threads = f" x {settings['threads']} threads" if settings["worker_class"] == "gthread" else ""
    return f"gunicorn.conf.py: {settings['workers']} {settings['worker_class']} workers{threads}"


def start_gunicorn(env: dict[str, str], log_path: Path, extra_args: tuple[str, ...] = ()) -> Server:
    port = free_port()
    command = [str(VENV_BIN / "gunicorn"), *gunicorn_settings(code_tree(env)), "-b", f"127.0.0.1:{port}",
               *extra_args, "wsgi:app"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=code_tree(env), env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return Server(process, port, log_path)


def wait_until_ready(server: Server, timeout: float = 90) -> None:
    """Poll /readyz until it answers 200, the master dies, or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({server.process.returncode}):\n{server.log_tail()}")
        if readyz_status(server.port) == 200:
            return
        time.sleep(0.25)
    raise RuntimeError(f"/readyz not 200 after {timeout:.0f} s:\n{server.log_tail()}")


def readyz_status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def stop_server(server: Server, timeout: float = 30) -> None:
    """SIGTERM the gunicorn master we started (it stops its workers), then SIGKILL its group."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)


def child_pids(parent: int) -> list[int]:
    path = Path(f"/proc/{parent}/task/{parent}/children")
    try:
        return [int(pid) for pid in path.read_text().split()]
    except OSError:
        return []


def rss_mib(pid: int) -> float:
    """Resident set size of one process (VmRSS), in MiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int, with_reaped_children: bool = False) -> float:
    """User + system CPU time of one process so far (plus that of its exited,
    waited-for children if asked); 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15 if with_reaped_children else 13])
    return ticks / CLOCK_TICKS


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of all the threads of one process so far; 0 if it is gone."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            total += sum(int(line.split()[1]) for line in status.read_text().splitlines() if "ctxt_switches:" in line)
    return total


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def parent_pid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def postmaster_pid() -> int | None:
    """The local PostgreSQL server's main process: a `postgres` whose parent is not one."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and process_name(int(entry.name)) == "postgres":
            if process_name(parent_pid(int(entry.name))) != "postgres":
                return int(entry.name)
    return None


def postgres_cpu_seconds() -> float:
    """CPU used so far by the local PostgreSQL server, all databases: its live
    processes plus the backends that already exited (reaped by the postmaster)."""
    postmaster = postmaster_pid()
    if postmaster is None:
        return 0.0
    live = sum(cpu_seconds(pid) for pid in child_pids(postmaster))
    return cpu_seconds(postmaster, with_reaped_children=True) + live


# --- counting what the code under test sends to the database, in its own process ---------------

# Frontend messages after which libpq waits for the server: each is one round trip.
WAITING_MESSAGES = ("Query", "Sync", "CopyDone", "CopyFail")


class StatementCounter:
    """What the app sends to the database while installed: SQLAlchemy cursor executions, psycopg COPY streams,
    COMMITs, and on PostgreSQL libpq's protocol trace of every pooled connection it checks out."""

    def __init__(self, engine, trace_path: Path):
        from sqlalchemy import event
        self.engine, self.event, self.trace_path = engine, event, trace_path
        self.kinds: collections.Counter = collections.Counter()
        self.traced: list = []
        self.trace_fd = os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        self.listeners = [(engine, "before_cursor_execute", self.on_execute), (engine, "commit", self.on_commit),
                          (engine, "checkout", self.on_checkout)]

    def on_execute(self, _conn, _cursor, statement, _params, _context, executemany) -> None:
        self.kinds[first_word(statement) + (" (executemany)" if executemany else "")] += 1

    def on_commit(self, connection) -> None:
        """A COMMIT, unless psycopg has no transaction open (a statement run in autocommit): then it sends nothing."""
        pgconn = getattr(connection.connection.driver_connection, "pgconn", None)
        if pgconn is None or pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.kinds["COMMIT"] += 1

    def on_checkout(self, dbapi_connection, _record, _proxy) -> None:
        pgconn = getattr(dbapi_connection, "pgconn", None)
        if pgconn is not None and dbapi_connection not in self.traced:
            from psycopg import pq
            pgconn.trace(os.dup(self.trace_fd))  # libpq takes its own FILE on the copy of the descriptor
            pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            self.traced.append(dbapi_connection)

    @contextlib.contextmanager
    def installed(self):
        import psycopg
        original_copy = psycopg.Cursor.copy

        def counted_copy(cursor, statement, *args, **kwargs):
            self.kinds["COPY"] += 1
            return original_copy(cursor, statement, *args, **kwargs)

        for target, name, listener in self.listeners:
            self.event.listen(target, name, listener)
        psycopg.Cursor.copy = counted_copy
        try:
            yield self
        finally:
            psycopg.Cursor.copy = original_copy
            for target, name, listener in self.listeners:
                self.event.remove(target, name, listener)
            for connection in self.traced:
                connection.pgconn.untrace()  # flushes the trace
            os.close(self.trace_fd)

    def statements(self) -> int:
        return sum(self.kinds.values())

    def trace_counts(self) -> collections.Counter:
        """Frontend messages by type, and the commands the server ran: simple Query by first word, extended Execute."""
        counts: collections.Counter = collections.Counter()
        for line in self.trace_path.read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[0] == "F":
                message = parts[2]
                counts[message] += 1
                if message == "Query":
                    counts["command " + first_word(parts[3].strip(' "') if len(parts) > 3 else "")] += 1
                elif message == "Execute":  # extended protocol; its text was parsed once, perhaps long ago
                    counts["command (extended query)"] += 1
        return counts


def first_word(statement: str) -> str:
    return (statement.split(None, 1) or ["?"])[0].upper()


def round_trips(trace: collections.Counter) -> int:
    """The round trips in StatementCounter.trace_counts(): the messages after which libpq waits."""
    return sum(trace[message] for message in WAITING_MESSAGES)


# --- the load generator ---------------------------------------------------------

class HttpSession:
    """One keep-alive HTTP/1.1 connection. A job is (kind, method, path, body bytes or None).

    A minimal client on purpose: http.client parses headers with the email
    package and costs ~2.7x more CPU per request, CPU taken from the server.
    """

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.authorization = f"Authorization: Bearer {token}\r\n" if token else ""
        self.sock: socket.socket | None = None

    def perform(self, job: tuple) -> tuple[int, str | None]:
        _, method, path, body = job
        if self.sock is not None:
            try:
                return self.exchange(method, path, body)
            except TRANSIENT_ERRORS:  # the server closed an idle keep-alive connection
                self.reset()
        return self.exchange(method, path, body)

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, str | None]:
        if self.sock is None:
            self.connect()
        body = body or b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json\r\n"
                f"Accept: application/fhir+json\r\n{self.authorization}Content-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        status_line = self.reader.readline()
        if not status_line:
            raise http.client.RemoteDisconnected("connection closed before the response")
        headers = self.read_headers()
        self.skip_body(headers)
        if headers.get(b"connection", b"").lower() == b"close":
            self.reset()
        location = headers.get(b"location")
        return int(status_line.split(None, 2)[1]), location.decode() if location else None

    def read_headers(self) -> dict[bytes, bytes]:
        headers = {}
        for _ in range(200):
            line = self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return headers

    def skip_body(self, headers: dict[bytes, bytes]) -> None:
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            for _ in range(1_000_000):
                size = int(self.reader.readline().split(b";")[0], 16)
                self.reader.read(size + 2)  # the chunk and its CRLF
                if size == 0:
                    return
        elif b"content-length" in headers:
            self.reader.read(int(headers[b"content-length"]))

    def reset(self) -> None:
        if self.sock is not None:
            self.reader.close()
            self.sock.close()
        self.sock = None

    def close(self) -> None:
        self.reset()


FLOOR_COLUMNS = "res_type, res_id, version, last_updated, deleted, body"


class PostgresFloorSession:
    """One psycopg connection inserting rows, one INSERT + COMMIT each.
    A job is (kind, res_type, res_id, body JSON text)."""

    SQL = f"INSERT INTO bench_floor ({FLOOR_COLUMNS}) VALUES (%s, %s, 1, now(), false, %s::jsonb)"

    def __init__(self, dsn: str):
        self.conn = psycopg.connect(dsn)

    def perform(self, job: tuple) -> tuple[int, None]:
        self.conn.execute(self.SQL, job[1:])
        self.conn.commit()
        return 201, None

    def reset(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


class SqliteFloorSession:
    """One sqlite3 connection inserting rows, one write transaction each,
    with the pragmas a server would use (WAL, synchronous=NORMAL)."""

    SQL = (f"INSERT INTO bench_floor ({FLOOR_COLUMNS}) "
           "VALUES (?, ?, 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0, ?)")

    def __init__(self, path: str):
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def perform(self, job: tuple) -> tuple[int, None]:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(self.SQL, job[1:])
        self.conn.execute("COMMIT")
        return 201, None

    def reset(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Record:
    kind: str
    status: int  # HTTP status; 0 for an exception in the client
    seconds: float
    location: str | None


@dataclass
class LoadResult:
    records: list[Record]
    wall_seconds: float
    client_cpu_seconds: float
    server_cpu_seconds: float = 0.0
    worker_cpu_seconds: list[float] = field(default_factory=list)
    postgres_cpu_seconds: float = 0.0
    machine_busy_share: float = 0.0
    first_errors: list[str] = field(default_factory=list)

    def of_kind(self, kind: str | None = None) -> list[Record]:
        return [r for r in self.records if kind is None or r.kind == kind]


def drain_jobs(jobs: collections.deque, session, sink: list, errors: list, interval: float = 0.0,
               deadline: float = math.inf) -> None:
    """Perform jobs from the shared queue until it is empty (deque.popleft is atomic) or the
    deadline (a time.perf_counter() value) has passed.

    With an interval, start one request every `interval` seconds at most (a paced client,
    starting at a random point of its first interval so that clients do not move in step);
    a late request starts at once and the schedule restarts from it.
    """
    next_start = time.perf_counter() + random.uniform(0, interval)
    while time.perf_counter() < deadline:
        try:
            job = jobs.popleft()
        except IndexError:
            return
        if interval:
            time.sleep(max(0.0, next_start - time.perf_counter()))
            next_start = max(next_start, time.perf_counter()) + interval
        started = time.perf_counter()
        try:
            status, location = session.perform(job)
        except Exception as exc:  # noqa: BLE001 - counted as an error, the run goes on
            status, location = 0, None
            errors.append(f"{job[0]}: {exc!r}"[:300])
            session.reset()
        sink.append(Record(job[0], status, time.perf_counter() - started, location))


def run_client_process(make_session, jobs: list, threads: int, interval: float = 0.0,
                       max_seconds: float = math.inf) -> dict:
    """Body of one client process: `threads` sessions drain `jobs`, each paced to `interval` if given,
    for at most `max_seconds`."""
    queue = collections.deque(jobs)
    sessions = [make_session() for _ in range(threads)]
    sinks: list[list] = [[] for _ in sessions]
    errors: list[str] = []
    deadline = time.perf_counter() + max_seconds
    workers = [threading.Thread(target=drain_jobs, args=(queue, s, sink, errors, interval, deadline))
               for s, sink in zip(sessions, sinks)]
    cpu_before, started = process_cpu_seconds(), time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    finished, cpu_after = time.monotonic(), process_cpu_seconds()
    for session in sessions:
        session.close()
    records = [record for sink in sinks for record in sink]
    return {"records": records, "started": started, "finished": finished,
            "cpu": cpu_after - cpu_before, "errors": errors[:5]}


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(make_session, jobs: list, processes: int, threads: int,
             server: Server | None = None, rate: float | None = None, max_seconds: float = math.inf) -> LoadResult:
    """Run `jobs` from processes x threads concurrent sessions and time them.

    `make_session` must be picklable (a class or functools.partial of one): it
    opens one session per thread inside the forked client processes. With a
    `rate` (requests/s over all sessions) the sessions are paced, so latency is
    measured at that load rather than at saturation. Sessions stop taking jobs
    after `max_seconds`, which bounds phases whose requests turn out slow.
    """
    interval = processes * threads / rate if rate else 0.0
    slices = [jobs[i::processes] for i in range(processes)]
    worker_pids = server.worker_pids() if server else []
    worker_cpu_before = [cpu_seconds(pid) for pid in worker_pids]
    postgres_before, (busy_before, total_before) = postgres_cpu_seconds(), machine_busy_ticks()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.starmap(run_client_process, [(make_session, s, threads, interval, max_seconds) for s in slices])
    busy_after, total_after = machine_busy_ticks()
    worker_cpu = [cpu_seconds(pid) - before for pid, before in zip(worker_pids, worker_cpu_before)]
    postgres_cpu = postgres_cpu_seconds() - postgres_before
    return LoadResult(
        records=[record for part in parts for record in part["records"]],
        wall_seconds=max(p["finished"] for p in parts) - min(p["started"] for p in parts),
        client_cpu_seconds=sum(p["cpu"] for p in parts),
        server_cpu_seconds=sum(worker_cpu),
        worker_cpu_seconds=worker_cpu,
        postgres_cpu_seconds=postgres_cpu,
        machine_busy_share=(busy_after - busy_before) / max(1, total_after - total_before),
        first_errors=[e for p in parts for e in p["errors"]][:5],
    )


# --- figures --------------------------------------------------------------------

def cpu_share(seconds: float, result: LoadResult) -> float:
    """Percent of the machine's cores used by `seconds` of CPU over the run's wall time."""
    return 100 * seconds / (result.wall_seconds * (os.cpu_count() or 1)) if result.wall_seconds else 0.0


def outside_cpu_share(result: LoadResult) -> float:
    """Busy CPU not used by the clients, the workers or PostgreSQL: other work and the kernel."""
    ours = result.client_cpu_seconds + result.server_cpu_seconds + result.postgres_cpu_seconds
    return max(0.0, 100 * result.machine_busy_share - cpu_share(ours, result))


def phase_line(result: LoadResult, kind: str) -> str:
    records = result.of_kind(kind)
    ok = [r.seconds for r in records if is_success(r.status)]
    rate = len(ok) / result.wall_seconds if result.wall_seconds else 0.0
    return (f"{kind:<8} {len(records):>7,} req  {rate:>8,.0f}/s  p50 {1000 * percentile(ok, .5):6.1f} ms"
            f"  p99 {1000 * percentile(ok, .99):6.1f} ms  failed {len(records) - len(ok)}")


def cpu_line(result: LoadResult) -> str:
    client = cpu_share(result.client_cpu_seconds, result)
    server = cpu_share(result.server_cpu_seconds, result)
    postgres = cpu_share(result.postgres_cpu_seconds, result)
    busy = 100 * result.machine_busy_share
    split = "/".join(f"{s:.1f}" for s in result.worker_cpu_seconds)
    return (f"CPU of {os.cpu_count()} cores: clients {client:4.1f}%  gunicorn {server:4.1f}% (s per worker "
            f"{split or '-'})  postgres {postgres:4.1f}%  outside {outside_cpu_share(result):4.1f}%"
            f"  idle {100 - busy:4.1f}%  [{result.wall_seconds:.1f} s]")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of unsorted values; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def is_success(status: int) -> bool:
    return 200 <= status < 300


@dataclass
class Figure:
    """One line of the results table."""
    name: str
    backend: str
    value: float | None
    unit: str
    target: str = "—"
    passed: bool | None = None  # None: no target

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: ""}[self.passed]

    def formatted_value(self) -> str:
        if self.value is None:
            return "n/a"
        if abs(self.value) >= 100 or self.value == int(self.value):
            return f"{self.value:,.0f} {self.unit}".strip()
        return f"{self.value:,.2f} {self.unit}".strip()


def ratio_lines(figures: list[Figure], new: str, old: str) -> list[str]:
    """For each figure measured on both revisions (backend labels `name @ new` and `name @ old`), new / old."""
    values = {(f.name, f.backend): f.value for f in figures}
    lines = ["| figure | backend | " + new + " | " + old + " | ratio |", "|---|---|---|---|---|"]
    for (name, label), value in values.items():
        backend, _, revision = label.partition(" @ ")
        before = values.get((name, f"{backend} @ {old}"))
        if revision == new and value and before:
            lines.append(f"| {name} | {backend} | {value:,.4g} | {before:,.4g} | {value / before:.2f} |")
    return lines


def table_lines(figures: list[Figure]) -> list[str]:
    """The figures as a Markdown table (readable in a terminal too)."""
    header = ("figure", "backend", "value", "target", "result")
    rows = [(f.name, f.backend, f.formatted_value(), f.target, f.verdict) for f in figures]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)),
             "-|-".join("-" * w for w in widths)]
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return [f"| {line} |" for line in lines]


# --- the floor table --------------------------------------------------------------

FLOOR_TABLE_DDL = """CREATE TABLE bench_floor (
    res_type VARCHAR(64) NOT NULL, res_id VARCHAR(64) NOT NULL, version INTEGER NOT NULL,
    last_updated {timestamp} NOT NULL, deleted BOOLEAN NOT NULL, body {json},
    PRIMARY KEY (res_type, res_id))"""


def create_postgres_floor_table(dsn: str) -> None:
    """The shape of the server's `resource` table, without the server."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_floor")
        conn.execute(FLOOR_TABLE_DDL.format(timestamp="TIMESTAMPTZ", json="JSONB"))


def create_sqlite_floor_table(path: str) -> None:
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("DROP TABLE IF EXISTS bench_floor")
        conn.execute(FLOOR_TABLE_DDL.format(timestamp="TEXT", json="JSON"))
    conn.close()
