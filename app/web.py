"""The Flask application factory: one engine per process, checked against the schema at start."""
from flask import Flask

from app.config import Settings, load_settings
from app.rest.health import health
from app.rest.hl7v2 import hl7v2
from app.rest.operations import operations
from app.rest.outcome import register_error_handlers
from app.rest.routes import fhir
from app.rest.urls import configure_urls
from app.store.db import make_engine
from app.store.migrate import check_schema_current


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; raises SchemaNotCurrent, naming the fixing command, if the schema is missing or old."""
    settings = settings or load_settings()
    engine = make_engine(settings.database_url)
    check_schema_current(engine)
    app = Flask(__name__)
    # An id holding %2F arrives as Patient//1; merging the slashes would redirect a DELETE of it to Patient/1.
    app.url_map.merge_slashes = False
    app.config.update(EHR_SETTINGS=settings, MAX_CONTENT_LENGTH=settings.max_body_bytes + 1)  # see read_raw_body
    app.extensions["ehr.engine"] = engine
    configure_urls(app)
    app.register_blueprint(fhir)
    app.register_blueprint(operations)
    app.register_blueprint(health)
    app.register_blueprint(hl7v2)
    register_error_handlers(app)
    return app
