"""DICOM ingestion over C-STORE, ours against Orthanc, side by side in one run: instances/s and ours/Orthanc.

    .venv/bin/python bench/dicom_ingest.py [--instances 300] [--wait-quiet 60]

The same kind of set (pydicom's CT_small.dcm, 39 KB, and MR_small.dcm, 10 KB, as studies of 20 instances under new
UIDs, a new set for every send) is sent by Debian's dcmtk storescu to `ehr dicom` on a fresh PostgreSQL database and
to Orthanc (Debian's package, started here with its own storage under a temporary folder), over 1 association and over
4 at once: first with a default storescu and Orthanc (Nagle's algorithm on), then with TCP_NODELAY=1 set for
storescu and Orthanc. Ours is timed until its ImagingStudies are written too (every study's mark taken). Targets:
ours/Orthanc at least 1.0 with Nagle off everywhere, at least 10 with a default sender and Orthanc."""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ORTHANC = "/usr/sbin/Orthanc"
STUDY_SIZE = 20
ASSOCIATIONS = (1, 4)
TARGETS = {"default": 10.0, "nodelay": 1.0}


def instance_set(folder: Path, count: int) -> list[Path]:
    """`count` instances in studies of STUDY_SIZE, alternately CT and MR studies, under new UIDs."""
    folder.mkdir(parents=True)
    templates = [dcmread(get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm")]
    paths = []
    for number in range(count):
        if number % STUDY_SIZE == 0:
            template = templates[(number // STUDY_SIZE) % 2]
            template.StudyInstanceUID, template.SeriesInstanceUID = generate_uid(), generate_uid()
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number % STUDY_SIZE + 1
        path = folder / f"{number:05d}.dcm"
        template.save_as(path)
        paths.append(path)
    return paths


def sent(files: list[Path], port: int, called: str, associations: int, nodelay: bool) -> float:
    """Seconds for `associations` storescu processes, each sending its share of `files` over one association."""
    env = {**os.environ, **({"TCP_NODELAY": "1"} if nodelay else {})}
    shares = [files[index::associations] for index in range(associations)]
    started = time.perf_counter()
    processes = [subprocess.Popen(["storescu", "-aet", "BENCH", "-aec", called, "127.0.0.1", str(port), *map(str, share)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for share in shares]
    for process in processes:
        _, errors = process.communicate(timeout=1800)
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {errors[-500:]}")
    return time.perf_counter() - started


@contextlib.contextmanager
def ehr_dicom(database: str, workdir: Path):
    env = {**common.server_env(common.sqlalchemy_postgres_url(database)), "EHR_DICOM_STORAGE": str(workdir / "ours")}
    common.run_ehr(["db", "upgrade"], env)
    port = common.free_port()
    with answering([str(common.VENV_BIN / "ehr"), "dicom", "--port", str(port)], env, workdir / "ehr-dicom.log", port, "EHR"):
        yield port


@contextlib.contextmanager
def orthanc(workdir: Path, nodelay: bool):
    folder = workdir / f"orthanc-{'nodelay' if nodelay else 'default'}"
    folder.mkdir()
    port, http_port = common.free_port(), common.free_port()
    config = {"Name": "bench", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"), "DicomAet": "ORTHANC",
              "DicomPort": port, "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
              "DicomCheckCalledAet": False, "StorageCompression": False, "Plugins": []}
    (folder / "orthanc.json").write_text(json.dumps(config))
    env = {**os.environ, **({"TCP_NODELAY": "1"} if nodelay else {})}
    with answering([ORTHANC, str(folder / "orthanc.json")], env, folder / "orthanc.log", port, "ORTHANC"):
        yield port


@contextlib.contextmanager
def answering(command: list[str], env: dict[str, str], log_path: Path, port: int, called: str):
    """A DICOM server started with `command`, its output in `log_path`, once it answers C-ECHO; stopped at the end."""
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            wait_for_echo(port, called)
            yield
        finally:
            process.terminate()
            process.wait(timeout=60)


def wait_for_echo(port: int, called: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["echoscu", "-aec", called, "127.0.0.1", str(port)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers C-ECHO on port {port}")
        time.sleep(0.2)


def studies_written(database: str, timeout: float = 600) -> None:
    """Wait until every study's mark is taken: its ImagingStudy is written."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(common.postgres_dsn(database), autocommit=True) as connection:
        while connection.execute("SELECT count(*) FROM dicom_study_pending").fetchone()[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("ImagingStudies not written in time")
            time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--wait-quiet", type=float, default=0, help="wait up to this many seconds for a quiet machine")
    args = parser.parse_args(argv)
    if args.wait_quiet:
        common.wait_for_quiet_machine(args.wait_quiet)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as temporary, common.fresh_database("postgresql", Path(temporary), "bench_dicom") as url:
        workdir, database = Path(temporary), url.rsplit("/", 1)[1]
        with ehr_dicom(database, workdir) as ours:
            for mode in ("default", "nodelay"):
                with orthanc(workdir, mode == "nodelay") as theirs:
                    for associations in ASSOCIATIONS:
                        files = instance_set(workdir / f"set-{mode}-{associations}-ours", args.instances)
                        started = time.perf_counter()
                        sent(files, ours, "EHR", associations, mode == "nodelay")
                        studies_written(database)
                        our_rate = len(files) / (time.perf_counter() - started)
                        files = instance_set(workdir / f"set-{mode}-{associations}-orthanc", args.instances)
                        their_rate = len(files) / sent(files, theirs, "ORTHANC", associations, mode == "nodelay")
                        rows.append((mode, associations, our_rate, their_rate))
                        print(f"  {mode:8} {associations} association(s): ours {our_rate:7.1f}/s  Orthanc {their_rate:7.1f}/s", flush=True)
    print_report(rows, args.instances)
    return 0


def print_report(rows: list[tuple], instances: int) -> None:
    print("\n## Machine\n")
    for name, value in common.describe_machine().items():
        print(f"- {name}: {value}")
    print(f"- {instances} instances per send (CT 39 KB and MR 10 KB, studies of {STUDY_SIZE}), dcmtk storescu as the sender\n")
    print("| sender and Orthanc | associations | ours instances/s | Orthanc instances/s | ours/Orthanc | target | result |")
    print("|---|---|---|---|---|---|---|")
    for mode, associations, ours, theirs in rows:
        ratio = ours / theirs
        label = "Nagle on (default)" if mode == "default" else "TCP_NODELAY=1"
        print(f"| {label} | {associations} | {ours:.1f} | {theirs:.1f} | {ratio:.2f} | >= {TARGETS[mode]:g} | {'PASS' if ratio >= TARGETS[mode] else 'MISS'} |")


if __name__ == "__main__":
    sys.exit(main())
