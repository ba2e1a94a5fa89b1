"""The media types of FHIR JSON and of JSON Patch (R4 http.html#mime-type)."""
FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
JSON_PATCH = "application/json-patch+json"
