"""How /fhir URLs split into segments: a type name, an id or a version never starts with `$`
(FHIR id: [A-Za-z0-9-.]{1,64}); a segment that does names an operation. A trailing slash changes nothing."""
from flask import Flask
from werkzeug.routing import BaseConverter


class SegmentConverter(BaseConverter):
    """The default converter (`<type_name>`, `<resource_id>`): one segment, never an operation."""

    regex = r"[^$/][^/]*"
    part_isolating = True  # werkzeug would otherwise treat a regex that names "/" as spanning segments


class OperationConverter(BaseConverter):
    """`<operation:name>`: a `$name` segment, given to the view as the name without its `$`."""

    regex = r"\$[^/]+"
    part_isolating = True

    def to_python(self, value: str) -> str:
        return value.removeprefix("$")

    def to_url(self, value: str) -> str:
        return f"${value}"


def configure_urls(app: Flask) -> None:
    """Operations apart from ids; `/fhir/Patient/` is `/fhir/Patient` and `/fhir/Patient/1/` is `/fhir/Patient/1`, as on HAPI."""
    app.url_map.converters.update(default=SegmentConverter, operation=OperationConverter)
    app.url_map.strict_slashes = False
