"""The FHIR R4 resource model: which types we serve, validation, and element subsetting."""
