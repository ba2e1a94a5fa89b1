"""EHR integration server: a FHIR R4 REST server with an HL7 v2 feed."""
