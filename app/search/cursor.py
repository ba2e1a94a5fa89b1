"""Opaque paging cursors: a JSON object in URL-safe base64, handed out in next links and read back."""
import base64
from urllib.parse import urlencode

import orjson

from app.errors import BadRequest

FOREIGN_CURSOR = "_cursor is not a cursor this server issued for this request; follow the Bundle's next link as given."
MAX_ROW_KEY = 2**63 - 1  # pk and seq are 64-bit on PostgreSQL


def encode_cursor(cursor: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")


def is_row_key(value) -> bool:
    """Whether a cursor's value can be a row key (pk, seq); JSON's true is an int to Python, and cursors can be forged."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ROW_KEY


def decode_cursor(text: str) -> dict:
    try:
        cursor = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise BadRequest(FOREIGN_CURSOR) from None
    if not isinstance(cursor, dict):
        raise BadRequest(FOREIGN_CURSOR)
    return cursor


def paging_links(url: str, params: list[tuple[str, str]], next_cursor: dict | None) -> dict[str, str]:
    """self and, when there is more, next: `url` with the request's parameters, and the cursor for the next page."""
    params = [(key, value) for key, value in params if key != "_cursor"]
    links = {"self": link_url(url, params)}
    if next_cursor is not None:
        links["next"] = link_url(url, [*params, ("_cursor", encode_cursor(next_cursor))])
    return links


def link_url(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url
