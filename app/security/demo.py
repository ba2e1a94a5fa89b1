"""The demo's way in: a clinician login and an app registered for it, so that `ehr demo` (and `make run`) can print
a command that issues a working token. Nobody signs in as the demo clinician: its password is random and never
shown; tokens for it come from `ehr tokens issue`, which an operator with the database may run anyway."""
import secrets

from sqlalchemy import Connection

from app.security.accounts import ClientRegistration, add_user, all_clients, find_user, register_client

DEMO_USERNAME = "demo-clinician"
DEMO_CLIENT_NAME = "Demo console"
DEMO_SCOPE = "user/*.cruds openid fhirUser"
DEMO_REDIRECT_URI = "http://127.0.0.1/demo"  # a public client must have one; the console only gets tokens from the command line


def demo_client_id(connection: Connection, practitioner: str) -> str:
    """The demo console's client id; on first use it is registered, and the demo clinician (`practitioner`, such as
    Practitioner/demo-practitioner-1) given a login."""
    existing = next((client for client in all_clients(connection) if client.name == DEMO_CLIENT_NAME), None)
    if existing is not None:
        return existing.client_id
    if find_user(connection, DEMO_USERNAME) is None:
        add_user(connection, DEMO_USERNAME, secrets.token_urlsafe(24), practitioner)
    return register_client(connection, ClientRegistration(DEMO_CLIENT_NAME, (DEMO_REDIRECT_URI,), DEMO_SCOPE, "none"))["client_id"]


def token_command(command: str, client_id: str) -> str:
    """The `ehr tokens issue` command line for the demo clinician; `command` is how the caller ran `ehr`."""
    return f"{command} tokens issue --username {DEMO_USERNAME} --client {client_id} --scope '{DEMO_SCOPE}'"
