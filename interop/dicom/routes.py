"""DICOMweb's URLs, and the blueprint the server registers (setup.cfg's `ehr.blueprints`). Its views (http.py) are
imported by the first DICOMweb request a process serves, as Flask's "lazily loading views" pattern does: with them
come pydicom and what it loads (15 MiB of every server worker, 29 MiB where numpy is installed), which a worker that
never serves DICOMweb does not need."""
from flask import Blueprint
from werkzeug.utils import import_string

VIEWS = "interop.dicom.http"
STUDY = "/dicomweb/studies/<study_uid>"
SERIES = f"{STUDY}/series/<series_uid>"
INSTANCE = f"{SERIES}/instances/<sop_uid>"
ROUTES = (  # (method, URL, view)
    ("POST", "/dicomweb/studies", "store_instances"),
    ("POST", STUDY, "store_instances"),
    ("GET", STUDY, "retrieve"),
    ("GET", SERIES, "retrieve"),
    ("GET", INSTANCE, "retrieve"),
    ("GET", f"{STUDY}/metadata", "retrieve_metadata"),
    ("GET", f"{SERIES}/metadata", "retrieve_metadata"),
    ("GET", f"{INSTANCE}/metadata", "retrieve_metadata"),
    ("GET", f"{INSTANCE}/frames/<frame_list>", "retrieve_frames"),
    ("GET", f"{INSTANCE}/bulkdata/<path:path>", "retrieve_bulk_data"),
    ("GET", "/dicomweb/studies", "search_studies"),
    ("GET", "/dicomweb/series", "search_series"),
    ("GET", f"{STUDY}/series", "search_series"),
    ("GET", "/dicomweb/instances", "search_instances"),
    ("GET", f"{STUDY}/instances", "search_instances"),
    ("GET", f"{SERIES}/instances", "search_instances"),
)
BEFORE_EACH_REQUEST = ("sweep_marks_once", "authenticate")  # in this order


class LazyView:
    """A view of http.py, imported when it is first called."""

    def __init__(self, name: str):
        self.__name__ = name
        self.view = None

    def __call__(self, *args, **kwargs):
        if self.view is None:
            self.view = import_string(f"{VIEWS}.{self.__name__}")
        return self.view(*args, **kwargs)


def dicomweb_blueprint() -> Blueprint:
    blueprint = Blueprint("dicomweb", __name__)
    for name in BEFORE_EACH_REQUEST:
        blueprint.before_request(LazyView(name))
    views = {name: LazyView(name) for _, _, name in ROUTES}
    for method, rule, name in ROUTES:
        blueprint.add_url_rule(rule, endpoint=name, view_func=views[name], methods=[method])
    return blueprint


dicomweb = dicomweb_blueprint()
