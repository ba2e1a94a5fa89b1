"""What the authorization server publishes about itself: SMART's `/.well-known/smart-configuration` (App Launch
2.0, conformance.html), OpenID Connect discovery for its id_tokens, and the OAuth URIs of the CapabilityStatement's
security element (the way SMART v1 clients find the endpoints)."""
from app.rest.responses import fhir_base
from app.security.accounts import AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS
from app.security.keys import ALGORITHM
from app.security.scopes import ADMIN_SCOPE
from app.security.oauth import (
    ASSERTION_ALGORITHMS, AUTHORIZE_PATH, INTROSPECTION_PATH, JWKS_PATH, REVOCATION_PATH, TOKEN_PATH, public_auth_url,
)

GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
# What a client can count on today (the FHIR API's enforcement of them is still to come: docs/security.md).
CAPABILITIES = [
    "launch-standalone", "launch-ehr", "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
    "context-standalone-patient", "context-ehr-patient", "context-ehr-encounter", "permission-patient", "permission-user", "permission-v1", "permission-v2",
    "permission-offline", "permission-online", "sso-openid-connect",
]
SCOPES = [
    "openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access",
    "patient/*.rs", "patient/*.cruds", "patient/*.read", "patient/*.write",
    "user/*.rs", "user/*.cruds", "user/*.read", "user/*.write", "system/*.rs", "system/*.cruds", "system/*.read", "system/*.write",
    ADMIN_SCOPE,
]
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def smart_configuration() -> dict:
    return {
        "issuer": fhir_base(),
        "jwks_uri": public_auth_url(JWKS_PATH),
        "authorization_endpoint": public_auth_url(AUTHORIZE_PATH),
        "token_endpoint": public_auth_url(TOKEN_PATH),
        "revocation_endpoint": public_auth_url(REVOCATION_PATH),
        "introspection_endpoint": public_auth_url(INTROSPECTION_PATH),
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": list(CONFIDENTIAL_AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration() -> dict:
    """OpenID Connect discovery at {issuer}/.well-known/openid-configuration, the issuer being the FHIR base."""
    return {
        "issuer": fhir_base(),
        "authorization_endpoint": public_auth_url(AUTHORIZE_PATH),
        "token_endpoint": public_auth_url(TOKEN_PATH),
        "jwks_uri": public_auth_url(JWKS_PATH),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
    }


def capability_security() -> dict:
    """The CapabilityStatement's rest.security: SMART on FHIR, with the endpoints as the oauth-uris extension."""
    uris = {"authorize": AUTHORIZE_PATH, "token": TOKEN_PATH, "revoke": REVOCATION_PATH, "introspect": INTROSPECTION_PATH}
    return {
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}],
                     "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}],
        "extension": [{"url": OAUTH_URIS, "extension": [{"url": name, "valueUri": public_auth_url(path)} for name, path in uris.items()]}],
    }
