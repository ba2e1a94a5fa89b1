"""FHIR operations under /fhir ($everything, $lastn, $stats, $validate). Each view parses HTTP, calls one service, shapes the answer.

Werkzeug matches static path segments before converters, so /fhir/Observation/$lastn
is this blueprint's, never a read of an Observation with id "$lastn".
"""
from flask import Blueprint, current_app, request

from app.model.bundles import bundle, search_entry
from app.model.references import rewritten_reference
from app.operations.everything import everything_request, patient_everything
from app.operations.lastn import last_observations, lastn_request
from app.operations.parameters import parameter_pairs
from app.operations.stats import observation_statistics, stats_request
from app.operations.validate import validate_request, validation_outcome
from app.rest.negotiation import check_acceptable, fhir_response, read_json_body
from app.rest.responses import fhir_base, page_links, prefers_lenient_handling
from app.rest.routes import engine
from app.store.db import read_unit

operations = Blueprint("operations", __name__, url_prefix="/fhir")


@operations.before_request
def negotiate():
    check_acceptable()


@operations.route("/Patient/<resource_id>/$everything", methods=["GET", "POST"])
def patient_everything_view(resource_id):
    settings = current_app.config["EHR_SETTINGS"]
    pairs = operation_pairs()
    everything = everything_request(resource_id, pairs, prefers_lenient_handling(), settings.default_page_size, settings.max_page_size)
    with read_unit(engine()) as connection:
        page = patient_everything(connection, everything)
    base = fhir_base()
    entries = [search_entry(base, stored) for stored in page.matches]
    entries += [search_entry(base, stored, mode="include") for stored in page.included]
    next_cursor = {"after_pk": page.next_after_pk} if page.next_after_pk is not None else None
    return fhir_response(bundle("searchset", entries, page_links(pairs, next_cursor)))


@operations.get("/Observation/$lastn")
def observation_lastn():
    pairs = list(request.args.items(multi=True))
    lastn = lastn_request(pairs, prefers_lenient_handling())
    with read_unit(engine()) as connection:
        observations = last_observations(connection, lastn)
    base = fhir_base()
    return fhir_response(bundle("searchset", [search_entry(base, stored) for stored in observations], page_links(pairs, None), len(observations)))


@operations.get("/Observation/$stats")
def observation_stats():
    pairs = [(name, local_reference(value) if name == "subject" else value) for name, value in request.args.items(multi=True)]
    stats = stats_request(pairs, prefers_lenient_handling())
    with read_unit(engine()) as connection:
        parameters = observation_statistics(connection, stats)
    return fhir_response(parameters)


def local_reference(reference: str) -> str:
    """This server's absolute URL for a resource, e.g. {base}/Patient/1, as Patient/1."""
    return rewritten_reference(reference, {}, fhir_base())


@operations.post("/<type_name>/$validate")
def validate_type(type_name):
    return validate_response(type_name, None)


@operations.post("/<type_name>/<resource_id>/$validate")
def validate_instance(type_name, resource_id):
    return validate_response(type_name, resource_id)


def validate_response(type_name: str, resource_id: str | None):
    body = read_json_body() if request.content_length else None
    validation = validate_request(type_name, resource_id, body, list(request.args.items(multi=True)))
    with read_unit(engine()) as connection:
        outcome = validation_outcome(connection, validation)
    return fhir_response(outcome)


def operation_pairs() -> list[tuple[str, str]]:
    """The URL's parameters, plus those of a Parameters body when one was POSTed."""
    pairs = list(request.args.items(multi=True))
    if request.method == "POST" and request.content_length:
        pairs += parameter_pairs(read_json_body())
    return pairs
