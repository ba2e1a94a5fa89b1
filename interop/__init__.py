"""Feed adapters (HL7 v2 over MLLP, DICOM) that write through the same services as the REST API."""
