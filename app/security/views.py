"""The authorization server's HTTP endpoints (authlib answers them, with RFC 6749 error bodies)."""
from flask import Blueprint, current_app

from app.security.oauth import TOKEN_PATH

auth = Blueprint("auth", __name__)


@auth.post(TOKEN_PATH)
def token():
    return current_app.extensions["ehr.oauth"].create_token_response()
