"""How to run the FHIR server under gunicorn in production; gunicorn reads this file from its working directory:

    .venv/bin/gunicorn -b 0.0.0.0:8080 wsgi:app

Options on the command line override these. The figures are worker CPU per REST create on a 2-core machine, measured
back to back with bench/create_cost.py (see docs/benchmarks.md), where the same create costs about 2.0-2.5 ms of CPU
when the app is called in-process.
"""
import os


def usable_cores() -> int:
    """The cores this process may run on: a container's CPU set, not the host's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# One process per core: a process runs Python on one core at a time (the GIL). More workers than cores did not lower
# the CPU per create (4 workers on 2 cores: 3.0-3.7 ms, against 2.9-3.3 with 2) and each holds about 100 MiB and its
# own database connections. WEB_CONCURRENCY, gunicorn's usual variable, overrides it.
workers = int(os.environ.get("WEB_CONCURRENCY", usable_cores()))

# On PostgreSQL each worker is one gevent event loop: a request waiting on the database or the network lets the
# worker's other requests run, with no thread hand-offs and no GIL to pass (psycopg cooperates with gevent by itself).
# Against 8 threads per worker, measured back to back (4 alternating rounds of 6,000 requests from 16 clients, see
# docs/benchmarks.md): CRUD mix 650 requests/s against 529 (the cores no longer idle 5-11% of the time), creates 617/s
# against 557, with fewer context switches per request (2 against 15). An event loop is not preemptive, so the writer's
# loops over many resources pause every 10 ms (app/store/turns.py): a 3,000-entry transaction delayed another client
# of its worker by at most 56-67 ms (105 ms with threads).
#
# On SQLite the workers keep threads: SQLite's calls, its wait for another process's write lock among them, block
# the thread that makes them, which would be the whole event loop. Threads overlap one request's database work with
# another's Python work, and the gthread worker keeps client connections alive between requests. With 1 thread per
# worker, creates ran at a third of the rate; the sync worker, which also closes every connection, ran at half the
# rate and doubled the clients' CPU. 4, 8 and 16 threads measured alike.
# An unset or empty EHR_DATABASE_URL means the embedded SQLite file, as app/config.py reads it. (Importing the app here
# would load psycopg in the master, before a gevent worker patches the modules it waits with.)
worker_class = "gthread" if (os.environ.get("EHR_DATABASE_URL") or "sqlite").startswith("sqlite") else "gevent"
threads = 8  # gthread only; a gevent worker serves up to worker_connections (1,000) clients at once

# No access log (gunicorn's default, said here on purpose): the worker formats a line per request, 0.05-0.1 ms of CPU
# on a GET /healthz (340 us against 390-435 us) and 0.35-0.4 ms on a create in two runs. The load balancer in front
# can log requests instead; turn it on with --access-logfile when you need it.
accesslog = None
