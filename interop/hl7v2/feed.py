"""The HL7 v2 feed as the server installs it (the `ehr.feeds` entry point in setup.cfg): `POST /hl7v2` and
`GET /hl7v2/messages`, the `ehr mllp` and `ehr hl7` commands, and its messages as received, sealed when protection is on."""
from app.feeds import Feed
from interop.hl7v2.cli import hl7, mllp
from interop.hl7v2.http import hl7v2
from interop.hl7v2.sealed import MessageStoreSealing

HL7V2 = Feed("hl7v2", blueprints=(hl7v2,), commands=(mllp, hl7), sealed_stores=(MessageStoreSealing(),))
