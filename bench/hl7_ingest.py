"""HL7 v2 ingestion over MLLP on PostgreSQL: messages/s end to end, ACK latency, and the parse-only floor.

    .venv/bin/python bench/hl7_ingest.py [--messages 4000] [--connections 8] [--wait-quiet 300] [--quick] [--compare REV]

For each mix (typical 0.4-2 KB ADT and ORU messages; large v2.8 ORU messages of 8-10 KB):
start `ehr mllp` on a fresh PostgreSQL database, send the messages over K concurrent MLLP
connections (an ACK counts only once it arrives, which the listener sends after the commit),
then send more at a steady 200 messages/s and take the ACK latency percentiles. The ratio
compares with python-hl7's `hl7.parse` alone on the same messages, on one core.

Then, for the typical mix, a pass in one process (a subprocess running the code under test) gives the service's
messages to `receive_all` one at a time and in batches of 8 (as a worker under load takes them) and counts what
each message costs: CPU, statements (SQLAlchemy executions, COPY streams, COMMITs) and libpq round trips.

`--compare REV` runs everything for the code of git revision REV too (checked out into a temporary worktree, with
this .venv), back to back with this checkout's, and prints HEAD/REV ratios.
"""
import argparse
import contextlib
import functools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hl7

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 - bench/ is not a package

DATABASE_NAME = "ehr_bench_hl7"
START, END = b"\x0b", b"\x1c\r"
PACED_RATE = 200.0
TARGET_RATE = 500.0
TARGET_P99_MS = 50.0
WARM_UP = 20  # messages sent before the measured phases
LARGE_SHARE = 0.1  # a large message costs about ten typical ones
COUNTED_BATCHES = (1, 8)  # messages per unit of work in the in-process pass: alone, and a worker's batch under load
IN_PROCESS_IDS = 10_000_000  # its control ids and values differ from the listener's (and per batch size), for the same patients
STATEMENTS_TARGET = 4  # per message
RESULT_PREFIX = "RESULT "
FAMILIES = ("Berg", "Kowalski", "Müller", "Nguyen", "Okafor", "Silva", "Haddad", "Lindqvist", "Tanaka", "O'Brien")
GIVEN = ("Anna", "Jürgen", "Maria", "Chen", "Amara", "João", "Leila", "Sven", "Yuki", "Siobhan")
VITALS = (("8867-4", "Heart rate", "/min", 55, 110), ("8480-6", "Systolic blood pressure", "mm[Hg]", 100, 170),
          ("8462-4", "Diastolic blood pressure", "mm[Hg]", 60, 100), ("2708-6", "Oxygen saturation", "%", 90, 100),
          ("8310-5", "Body temperature", "Cel", 36, 39))
LABS = (("2345-7", "Glucose", "mg/dL", 70, 180), ("2160-0", "Creatinine", "mg/dL", 0.6, 1.6),
        ("718-7", "Hemoglobin", "g/dL", 11, 17), ("6690-2", "Leukocytes", "10*3/uL", 4, 12),
        ("2951-2", "Sodium", "mmol/L", 133, 146), ("2823-3", "Potassium", "mmol/L", 3.3, 5.3))


class MllpSession:
    """One MLLP connection; a job is (kind, message bytes). Returns (200, None) for AA/CA, (500, None) otherwise."""

    def __init__(self, port: int):
        self.port, self.sock = port, None

    def perform(self, job: tuple) -> tuple[int, None]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(START + job[1] + END)
        ack = b""
        while not ack.endswith(END):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the ACK")
            ack += chunk
        return (200 if b"\rMSA|AA|" in ack or b"\rMSA|CA|" in ack else 500), None

    def reset(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    close = reset


# --- messages ------------------------------------------------------------------------

class MessageFactory:
    """Deterministic, realistic messages: patients admitted, updated and resulted."""

    def __init__(self, seed: int, patients: int, first_id: int = 0):
        """`first_id`: where its control ids (MSH-10) start, so that two factories' messages are never re-sends."""
        self.rng, self.patients, self.count = random.Random(seed), patients, first_id

    def next_id(self) -> str:
        self.count += 1
        return f"B{self.count:08d}"

    def header(self, message_type: str, version: str) -> str:
        return f"MSH|^~\\&|BENCHSYS|NORTH|EHR|CENTRAL|20250301{self.rng.randrange(0, 235959):06d}||{message_type}|{self.next_id()}|P|{version}|||||||UNICODE UTF-8"

    def pid(self, number: int) -> str:
        rng = random.Random(number)
        family, given = rng.choice(FAMILIES), rng.choice(GIVEN)
        return (f"PID|1||MRN{number:07d}^^^NORTH&1.2.840.114350.1&ISO^MR~{900000000 + number}^^^SSA^SS||{family}^{given}^^^^^L||"
                f"19{rng.randrange(30, 99)}{rng.randrange(1, 13):02d}{rng.randrange(1, 28):02d}|{rng.choice('MF')}|||"
                f"{rng.randrange(1, 999)} Main St^^Springfield^IL^627{rng.randrange(10, 99)}^USA^H||"
                f"^PRN^PH^^1^217^555{rng.randrange(1000, 9999)}")

    def pv1(self, number: int) -> str:
        """PV1-2 class, PV1-3 bed, PV1-7 attending doctor, PV1-19 visit number, PV1-44 admit time."""
        fields = [""] * 44
        fields[:3] = ["1", "I", f"W{number % 9}^{number % 40}^1"]
        fields[6] = f"{1000 + number % 50}^Jones^Robert^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO"
        fields[18], fields[43] = f"V{number:08d}", "20250301080000"
        return "|".join(["PV1", *fields])

    def adt(self, event: str, number: int) -> bytes:
        segments = [self.header(f"ADT^{event}^ADT_A01", "2.5.1"), f"EVN|{event}|20250301080000", self.pid(number),
                    f"NK1|1|{random.Random(number).choice(FAMILIES)}^Erik|SPO^Spouse^HL70063|||^PRN^PH^^1^217^5550100",
                    self.pv1(number)]
        return "\r".join(segments).encode() + b"\r"

    def oru(self, number: int, version: str, panels: tuple, repeat: int) -> bytes:
        segments = [self.header("ORU^R01^ORU_R01", version), self.pid(number), self.pv1(number),
                    f"ORC|RE||F{self.count:09d}"]
        for group in range(repeat):
            segments.append(f"OBR|{group + 1}||F{self.count:09d}-{group}|85353-1^Vital signs panel^LN|||20250301{group % 24:02d}3000|||||||||"
                            f"{1000 + number % 50}^Jones^Robert||||||20250301{group % 24:02d}4500|||F")
            for index, (code, name, unit, low, high) in enumerate(panels, start=1):
                value = round(self.rng.uniform(low, high), 1)
                segments.append(f"OBX|{index}|NM|{code}^{name}^LN||{value}|{unit}^{unit}^UCUM|{low}-{high}|N|||F|||20250301{group % 24:02d}3000")
        return "\r".join(segments).encode() + b"\r"

    def typical(self, count: int) -> list[bytes]:
        """0.4-2 KB: admissions and updates (ADT A01/A08) and vital-sign results (ORU R01), mixed."""
        messages = []
        for _ in range(count):
            number = self.rng.randrange(self.patients)
            kind = self.rng.random()
            if kind < 0.25:
                messages.append(self.adt("A01", number))
            elif kind < 0.4:
                messages.append(self.adt("A08", number))
            else:
                messages.append(self.oru(number, "2.5.1", self.rng.choice((VITALS, LABS)), 1))
        return messages

    def large(self, count: int) -> list[bytes]:
        """8-10 KB v2.8 lab reports: several OBR groups of many OBX each."""
        return [self.oru(self.rng.randrange(self.patients), "2.8", LABS + VITALS, 8) for _ in range(count)]


# --- the run -------------------------------------------------------------------------

def parse_rate(messages: list[bytes]) -> float:
    """python-hl7's parse alone, on one core: messages/s."""
    texts = [message.decode().replace("\n", "\r") for message in messages]
    started = time.process_time()
    for text in texts:
        hl7.parse(text)
    return len(texts) / (time.process_time() - started)


class Listener(common.Server):
    """`ehr mllp`: its CPU is the main process's (framing, the event loop) and its worker processes'."""

    def worker_pids(self) -> list[int]:
        return [self.process.pid, *common.child_pids(self.process.pid)]


def start_listener(env: dict[str, str], log_path: Path, workers: int) -> Listener:
    port = common.free_port()
    command = [str(common.VENV_BIN / "ehr"), "mllp", "--port", str(port), "--workers", str(workers)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Listener(process, port, log_path)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"ehr mllp did not start; see {log_path}")


def run_mix(name: str, batches: dict[str, list[bytes]], args, workdir: Path, tree: Path, label: str) -> list[common.Figure]:
    """Saturation, then the steady 200/s, then half the saturated rate (the latency of a listener with headroom),
    then one message at a time on one connection (the latency of a message alone); for the typical mix, the
    in-process pass after them, on the same database."""
    common.wait_for_quiet_machine(args.wait_quiet)
    common.create_database(DATABASE_NAME)
    env = common.server_env(common.sqlalchemy_postgres_url(DATABASE_NAME), tree)
    try:
        common.run_ehr(["db", "upgrade"], env)
        listener = start_listener(env, workdir / f"mllp-{name}.log", args.workers)
        try:
            threads = max(1, args.connections // 2)
            session = functools.partial(MllpSession, listener.port)
            jobs = {phase: [(name, message) for message in messages] for phase, messages in batches.items()}
            relaxed = jobs["relaxed"]
            common.run_load(session, jobs["warm_up"], 1, 2)  # starts the workers
            saturated = common.run_load(session, jobs["measured"], 2, threads, server=listener)
            steady = common.run_load(session, jobs["paced"], 2, 2, rate=PACED_RATE, server=listener)
            half_rate = saturated_rate(saturated) / 2
            calm = common.run_load(session, relaxed[:len(relaxed) // 2], 2, 2, rate=half_rate, server=listener)
            alone = common.run_load(session, relaxed[len(relaxed) // 2:], 1, 1, server=listener)
        finally:
            os.killpg(listener.process.pid, signal.SIGTERM)
            listener.process.wait(timeout=30)
        counted = [run_in_process(env, args, batch) for batch in COUNTED_BATCHES] if name == "typical" else []
    finally:
        common.drop_database(DATABASE_NAME)
    return (figures(name, label, batches["measured"], saturated, steady, 2 * threads) + calm_figures(name, label, calm, half_rate)
            + alone_figures(name, label, alone) + [figure for result in counted for figure in in_process_figures(name, label, result)])


# --- the in-process pass: runs in a subprocess whose PYTHONPATH starts with the tree under test ----------

def measure_in_process(args) -> dict:
    """CPU, statements and round trips per message of `receive_all` on typical messages, `args.batch` at a time,
    on the database of EHR_DATABASE_URL: `args.messages` timed, then a quarter as many counted (the counting
    instruments cost CPU)."""
    from app.store.db import make_engine
    from interop.hl7v2.service import ACCEPTED_STATUSES, current_systems, receive_all

    engine = make_engine(os.environ["EHR_DATABASE_URL"])
    systems = current_systems(engine)  # read once, as a listener's worker keeps them
    factory = MessageFactory(args.seed + args.batch, args.patients, IN_PROCESS_IDS * args.batch)

    def receive(messages: list[bytes]) -> int:
        """How many were not accepted."""
        receipts = []
        for start in range(0, len(messages), args.batch):
            receipts += receive_all(engine, [(message, "127.0.0.1:2575") for message in messages[start:start + args.batch]], systems=systems)
        return sum(receipt.status not in ACCEPTED_STATUSES for receipt in receipts)

    receive(factory.typical(WARM_UP))
    timed, counted = factory.typical(args.messages), factory.typical(max(args.batch, args.messages // 4))
    started = time.process_time()
    failed = receive(timed)
    cpu = time.process_time() - started
    with tempfile.TemporaryDirectory(prefix="ehr-bench-trace-") as trace_dir:
        counter = common.StatementCounter(engine, Path(trace_dir) / "pq.trace")
        with counter.installed():
            failed += receive(counted)
        trace = counter.trace_counts()
    return {"batch": args.batch, "cpu_ms": 1000 * cpu / len(timed), "failed": failed, "kinds": dict(counter.kinds), "counted": len(counted),
            "statements": counter.statements() / len(counted), "round_trips": common.round_trips(trace) / len(counted)}


def run_in_process(env: dict[str, str], args, batch: int) -> dict:
    """measure_in_process in a subprocess running the code of env's tree (first on its PYTHONPATH)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--in-process", "--batch", str(batch),
               "--messages", str(args.messages // 4), "--patients", str(args.patients), "--seed", str(args.seed)]
    done = subprocess.run(command, cwd=common.code_tree(env), env=env, capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"in-process measurement failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    kinds = ", ".join(f"{kind} {n / result['counted']:.2g}" for kind, n in sorted(result["kinds"].items()))
    print(f"  [{common.code_tree(env).name}] in-process, {batch} per unit: {result['cpu_ms']:.2f} ms CPU, "
          f"{result['statements']:.2f} statements, {result['round_trips']:.2f} round trips per message ({kinds})")
    return result


def in_process_figures(name: str, label: str, result: dict) -> list[common.Figure]:
    alone = result["batch"] == 1
    per_unit = "one per unit" if alone else f"{result['batch']} per unit"
    statements = result["statements"]
    return [
        common.Figure(f"{name}: in-process CPU per message, {per_unit}", label, result["cpu_ms"], "ms"),
        common.Figure(f"{name}: statements per message, {per_unit}", label, statements, "",
                      f"<= {STATEMENTS_TARGET}", statements <= STATEMENTS_TARGET),
        common.Figure(f"{name}: round trips per message, {per_unit}", label, result["round_trips"], ""),
        common.Figure(f"{name}: messages not accepted in-process, {per_unit}", label, result["failed"], "", "0", result["failed"] == 0),
    ]


def figures(name: str, label: str, messages: list[bytes], saturated: common.LoadResult, steady: common.LoadResult,
            connections: int) -> list[common.Figure]:
    acked = [r for r in saturated.records if common.is_success(r.status)]
    rate = len(acked) / saturated.wall_seconds
    latencies = acknowledged_ms(steady)
    parse = parse_rate(messages)
    sizes = sorted(len(m) for m in messages)
    typical = name == "typical"
    print(f"[{name} @ {label}] {len(acked):,} of {len(messages):,} AA in {saturated.wall_seconds:.1f} s")
    print(f"[{name} @ {label}] CPU per message at saturation: listener {cpu_ms(saturated.server_cpu_seconds, acked):.2f} ms "
          f"(main and workers: {', '.join(f'{s:.1f}' for s in saturated.worker_cpu_seconds)} s), "
          f"postgres {cpu_ms(saturated.postgres_cpu_seconds, acked):.2f} ms, clients {cpu_ms(saturated.client_cpu_seconds, acked):.2f} ms")
    failed = len(saturated.records) - len(acked) + len(steady.records) - len(latencies)
    return [
        common.Figure(f"{name}: message size p50 / max", label, sizes[len(sizes) // 2], f"B (max {sizes[-1]:,} B)"),
        common.Figure(f"{name}: messages/s over {connections} connections, AA after commit", label, rate, "/s", ">= 500" if typical else "—", rate >= TARGET_RATE if typical else None),
        common.Figure(f"{name}: python-hl7 parse only, one core", label, parse, "/s"),
        common.Figure(f"{name}: end to end / parse only", label, rate / parse, "x"),
        common.Figure(f"{name}: ACK p50 at {PACED_RATE:.0f}/s", label, common.percentile(latencies, 0.5), "ms"),
        common.Figure(f"{name}: ACK p99 at {PACED_RATE:.0f}/s", label, common.percentile(latencies, 0.99), "ms",
                      "< 50 ms" if typical else "—", common.percentile(latencies, 0.99) < TARGET_P99_MS if typical else None),
        common.Figure(f"{name}: steady rate reached", label, len(steady.records) / steady.wall_seconds, "/s"),
        common.Figure(f"{name}: messages not acknowledged AA", label, failed, "", "0", failed == 0),
    ]


def acknowledged_ms(result: common.LoadResult) -> list[float]:
    """The ACK latencies of the messages acknowledged AA, in ms."""
    return [r.seconds * 1000 for r in result.records if common.is_success(r.status)]


def saturated_rate(result: common.LoadResult) -> float:
    return sum(1 for r in result.records if common.is_success(r.status)) / result.wall_seconds


def calm_figures(name: str, label: str, calm: common.LoadResult, asked: float) -> list[common.Figure]:
    latencies = acknowledged_ms(calm)
    reached = len(calm.records) / calm.wall_seconds
    return [
        common.Figure(f"{name}: ACK p50 at half the saturated rate", label, common.percentile(latencies, 0.5), "ms"),
        common.Figure(f"{name}: ACK p99 at half the saturated rate", label, common.percentile(latencies, 0.99), "ms"),
        common.Figure(f"{name}: half the saturated rate, asked", label, asked, "/s"),
        common.Figure(f"{name}: half the saturated rate, reached", label, reached, "/s"),
        common.Figure(f"{name}: messages not acknowledged AA at half rate", label, len(calm.records) - len(latencies), "", "0",
                      len(calm.records) == len(latencies)),
    ]


def alone_figures(name: str, label: str, alone: common.LoadResult) -> list[common.Figure]:
    latencies = acknowledged_ms(alone)
    return [
        common.Figure(f"{name}: ACK p50 one message at a time", label, common.percentile(latencies, 0.5), "ms"),
        common.Figure(f"{name}: ACK p99 one message at a time", label, common.percentile(latencies, 0.99), "ms"),
    ]


def cpu_ms(seconds: float, acked: list) -> float:
    return 1000 * seconds / max(1, len(acked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000, help="typical messages at saturation (large: a tenth)")
    parser.add_argument("--paced", type=int, default=2000, help="typical messages at the steady 200/s (large: a tenth)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent MLLP connections at saturation")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="`ehr mllp --workers`: worker processes")
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    parser.add_argument("--compare", metavar="REV", help="also run the code of git revision REV (checked out into a "
                        "temporary worktree, with this .venv), back to back per mix, and print HEAD/REV ratios")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # the subprocess of the in-process pass
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        print(RESULT_PREFIX + json.dumps(measure_in_process(args)))
        return
    if args.quick:
        args.messages, args.paced = 400, 200
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / "ehr-bench-hl7"
    workdir.mkdir(parents=True, exist_ok=True)
    factory = MessageFactory(args.seed, args.patients)
    results = []
    with contextlib.ExitStack() as stack:
        trees = [(common.REPO_ROOT, "HEAD")]
        if args.compare:
            trees.insert(0, (stack.enter_context(common.checked_out(args.compare)), args.compare))
        for name, make, share in (("typical", factory.typical, 1), ("large", factory.large, LARGE_SHARE)):
            paced = int(args.paced * share)
            batches = {"warm_up": make(WARM_UP), "measured": make(int(args.messages * share)), "paced": make(paced), "relaxed": make(paced)}
            for tree, revision in trees:
                results += run_mix(name, batches, args, workdir, tree, f"postgresql @ {revision}" if args.compare else "postgresql")
    print("\n## Machine\n")
    for key, value in common.describe_machine().items():
        print(f"- {key}: {value}")
    print("\n## Results\n")
    print("\n".join(common.table_lines(results)))
    if args.compare:
        print(f"\n## HEAD / {args.compare}\n")
        print("\n".join(common.ratio_lines(results, "HEAD", args.compare)))


if __name__ == "__main__":
    main()
