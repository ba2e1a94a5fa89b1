"""Probes for load balancers: /healthz (the process is up) and /readyz (database reachable, schema current)."""
from flask import Blueprint, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from app.store.migrate import SchemaNotCurrent, check_schema_current

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    return jsonify(status="ok")


@health.get("/readyz")
def readyz():
    try:
        check_schema_current(current_app.extensions["ehr.engine"])
    except SchemaNotCurrent as error:
        return jsonify(status="unavailable", reason=str(error)), 503
    except SQLAlchemyError as error:
        return jsonify(status="unavailable", reason=f"database unreachable: {error.__class__.__name__}"), 503
    return jsonify(status="ready")
