"""The WSGI entry point as gunicorn imports it in each worker."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FROZEN_AND_SERVING = """
import gc
import wsgi
print(gc.get_freeze_count(), wsgi.app.test_client().get("/fhir/metadata").status_code)
"""


def test_importing_wsgi_builds_the_app_and_hides_what_it_built_from_the_garbage_collector(database_url):
    env = {**os.environ, "EHR_DATABASE_URL": database_url, "EHR_AUTH": "off", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", FROZEN_AND_SERVING], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    frozen, status = map(int, done.stdout.split())
    assert status == 200
    assert frozen > 10_000  # the app, its routes and the models loaded at start: out of every full collection's scan
