"""Opaque paging cursors: a JSON object in URL-safe base64, handed out in next links and read back."""
import base64

import orjson

from app.errors import BadRequest

FOREIGN_CURSOR = "_cursor is not a cursor this server issued for this request; follow the Bundle's next link as given."


def encode_cursor(cursor: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")


def decode_cursor(text: str) -> dict:
    try:
        cursor = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise BadRequest(FOREIGN_CURSOR) from None
    if not isinstance(cursor, dict):
        raise BadRequest(FOREIGN_CURSOR)
    return cursor
