"""The FHIR REST entrance: Flask blueprints that parse HTTP, call the services and shape responses."""
