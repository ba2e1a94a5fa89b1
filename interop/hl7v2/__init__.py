"""HL7 v2: decoding, acknowledgements, mapping to FHIR, the receiving service and the MLLP listener."""
