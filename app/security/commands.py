"""`ehr clients`, `ehr users`, `ehr tokens` and `ehr launch`: the authorization server's clients and users, tokens
issued from the command line for operators' scripts and integration tests, and EHR launches.

Each command prints JSON that scripts can read (`clients add` prints the new client's id, and its secret once)."""
import secrets
import sys
from datetime import timedelta

import click
import orjson
from sqlalchemy import Engine

from app.errors import FhirError
from app.model.instants import utc_now
from app.security.accounts import (
    AccountError, ClientRegistration, add_user_of, all_clients, find_client, find_user, register_client, retire_client,
)
from app.security.scopes import ScopeError
from app.security.tokens import Launch, save_launch
from app.security.user_tokens import GrantError, UserGrant, issue_user_token
from app.store.unit import reading


def print_json(value) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def refused(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


MAX_TOKEN_SECONDS = 365 * 24 * 3600
MAX_LAUNCH_SECONDS = 24 * 3600


def security_commands(open_engine, fhir_base) -> list[click.Command]:
    """The commands, opening the database with `open_engine()` when they run; `fhir_base()` is this server's public
    FHIR base URL, which id_tokens name as their issuer."""

    @click.group()
    def clients():
        """OAuth clients: SMART apps and backend services."""

    @clients.command("add")
    @click.option("--name", required=True, help="The app's name, shown to patients on the consent page.")
    @click.option("--redirect-uri", "redirect_uris", multiple=True, help="Where the authorization code goes (repeatable).")
    @click.option("--scope", required=True, help="The most the client may be granted, space-separated SMART scopes.")
    @click.option("--public", is_flag=True, help="A public app (browser or mobile): PKCE, no secret.")
    @click.option("--secret", is_flag=True, help="A confidential app with a client secret.")
    @click.option("--jwks", "jwks_file", type=click.File("rb"), help="A backend service's public JWK Set (private_key_jwt).")
    @click.option("--jwks-uri", help="The https URL of a backend service's JWK Set (private_key_jwt).")
    def clients_add(name, redirect_uris, scope, public, secret, jwks_file, jwks_uri):
        """Register a client; prints {"client_id": ...} (and "client_secret" for --secret, shown only now)."""
        if [bool(given) for given in (public, secret, jwks_file, jwks_uri)].count(True) != 1:
            raise click.UsageError("Give exactly one of --public, --secret, --jwks FILE and --jwks-uri URL.")
        auth_method = "none" if public else "client_secret_basic" if secret else "private_key_jwt"
        try:
            jwks = orjson.loads(jwks_file.read()) if jwks_file else None
            registration = ClientRegistration(name, tuple(redirect_uris), scope, auth_method, jwks, jwks_uri)
            with open_engine().begin() as connection:
                print_json(register_client(connection, registration))
        except (AccountError, ScopeError, orjson.JSONDecodeError) as error:
            raise refused(error) from None

    @clients.command("list")
    def clients_list():
        """Print the registered clients as a JSON array (secrets are never shown)."""
        with open_engine().connect() as connection:
            print_json([client.listed() for client in all_clients(connection)])

    @clients.command("remove")
    @click.argument("client_id")
    def clients_remove(client_id):
        """Remove a client: it can no longer get tokens, and those it has stop working."""
        with open_engine().begin() as connection:
            revoked = retire_client(connection, client_id, utc_now())
        if revoked is None:
            raise click.ClickException(f"There is no client '{client_id}'.")
        print_json({"removed": client_id, "revokedTokens": revoked})

    @click.group()
    def users():
        """Logins of patients and practitioners."""

    @users.command("add")
    @click.option("--username", required=True)
    @click.option("--password-stdin", is_flag=True, required=True, help="Read the password from the first line of stdin.")
    @click.option("--patient", "fhir_user", help="The Patient the user is (Patient/ID).")
    @click.option("--practitioner", help="The Practitioner the user is (Practitioner/ID).")
    def users_add(username, password_stdin, fhir_user, practitioner):
        """Create a login bound to a FHIR identity, which must exist."""
        if fhir_user and practitioner:
            raise click.UsageError("Give --patient or --practitioner, not both.")
        if fhir_user and not fhir_user.startswith("Patient/") or practitioner and not practitioner.startswith("Practitioner/"):
            raise click.UsageError("--patient takes Patient/ID and --practitioner takes Practitioner/ID.")
        fhir_user = fhir_user or practitioner
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            add_user_of(open_engine(), username, password, fhir_user)
        except (AccountError, FhirError) as error:
            raise refused(error) from None
        print_json({"username": username, "fhirUser": fhir_user})

    @click.group()
    def tokens():
        """Access tokens issued from the command line."""

    @tokens.command("issue")
    @click.option("--username", required=True, help="The user the token acts for.")
    @click.option("--client", "client_id", required=True, help="The client the token is issued to.")
    @click.option("--scope", required=True, help="Space-separated SMART scopes; narrowed to the client's registration.")
    @click.option("--expires-in", type=click.IntRange(1, MAX_TOKEN_SECONDS), default=3600, show_default=True, help="Seconds.")
    def tokens_issue(username, client_id, scope, expires_in):
        """Issue a token as the token endpoint would after the user's consent; prints the token response."""
        with open_engine().begin() as connection:
            client, user = find_client(connection, client_id), find_user(connection, username)
            if client is None or user is None:
                raise click.ClickException(f"There is no client '{client_id}'." if client is None else f"There is no user '{username}'.")
            try:
                response = issue_user_token(connection, UserGrant(client, user, scope, expires_in, fhir_base()), utc_now())
            except GrantError as error:
                raise refused(error) from None
        print_json(response)

    @click.command("launch")
    @click.option("--patient", required=True, help="The Patient open in the EHR (Patient/ID).")
    @click.option("--encounter", help="The Encounter open in the EHR (Encounter/ID).")
    @click.option("--username", required=True, help="The user the EHR starts the app for: the only one who may use the launch.")
    @click.option("--client", "client_id", required=True, help="The app the EHR starts: the only one that may use the launch.")
    @click.option("--expires-in", type=click.IntRange(1, MAX_LAUNCH_SECONDS), default=3600, show_default=True, help="Seconds.")
    def launch(patient, encounter, username, client_id, expires_in):
        """Make an EHR launch: the `launch` value an EHR passes the app it starts, with `iss`, its FHIR base."""
        engine = open_engine()
        try:
            context = Launch(resource_id_of(engine, patient, "Patient"), encounter and resource_id_of(engine, encounter, "Encounter"),
                             username, client_id, utc_now() + timedelta(seconds=expires_in))
            with engine.begin() as connection:
                if find_user(connection, username) is None:
                    raise click.ClickException(f"There is no user '{username}'.")
                if find_client(connection, client_id) is None:
                    raise click.ClickException(f"There is no client '{client_id}'.")
                value = secrets.token_urlsafe(24)
                save_launch(connection, value, context)
        except FhirError as error:
            raise refused(error) from None
        print_json({"launch": value, "iss": fhir_base()})

    return [clients, users, tokens, launch]


def resource_id_of(engine: Engine, reference: str, type_name: str) -> str:
    """The id of `reference` (Patient/ID), which must name a live resource of `type_name`."""
    named_type, _, resource_id = reference.partition("/")
    if named_type != type_name or not resource_id:
        raise click.UsageError(f"'{reference}' must be {type_name}/ID.")
    with reading(engine) as unit:
        unit.read(type_name, resource_id)
    return resource_id

