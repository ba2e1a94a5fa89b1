"""EHR integration server: a FHIR R4 REST server with HL7 v2 and DICOM feeds."""
