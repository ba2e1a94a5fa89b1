"""`POST /hl7v2`: an HL7 v2 message over HTTP, answered with its ACK; the same service as the MLLP listener."""
from flask import Blueprint, Response, current_app, request

from interop.hl7v2.service import receive

hl7v2 = Blueprint("hl7v2", __name__)
ER7_MEDIA_TYPE = "x-application/hl7-v2+er7"


@hl7v2.post("/hl7v2")
def receive_message():
    """200 with the ACK (AA, AE or AR in MSA-1) for every message with an MSH; 400 for bytes that are not HL7 v2."""
    receipt = receive(current_app.extensions["ehr.engine"], request.get_data(), f"http:{request.remote_addr}")
    if receipt.unreadable:
        return Response("The body is not an HL7 v2 message: it must start with an MSH segment.\n", 400, mimetype="text/plain")
    body = (receipt.ack or "").encode(receipt.codec, errors="replace")
    return Response(body, 200, content_type=f"{ER7_MEDIA_TYPE}; charset={receipt.codec}")
