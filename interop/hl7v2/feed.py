"""The HL7 v2 feed as the server installs it (the `ehr.feeds` entry point in setup.cfg): `POST /hl7v2` and
`GET /hl7v2/messages`, and the `ehr mllp` and `ehr hl7` commands."""
from app.feeds import Feed
from interop.hl7v2.cli import hl7, mllp
from interop.hl7v2.http import hl7v2

HL7V2 = Feed("hl7v2", blueprints=(hl7v2,), commands=(mllp, hl7))
