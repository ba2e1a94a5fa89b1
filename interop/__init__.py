"""Feed adapters (HL7 v2 over MLLP and HTTP) that write through the same services as the REST API."""
