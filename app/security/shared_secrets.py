"""Secrets the server makes once and every worker and restart shares (today: the login session cookie's key)."""
import secrets

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from app.security.tables import server_secret


def shared_secret(connection: Connection, name: str) -> str:
    """The secret called `name`, made on first use; when two workers make it at once, the first one stored wins."""
    found = connection.execute(select(server_secret.c.value).where(server_secret.c.name == name)).scalar()
    if found is not None:
        return found
    try:
        with connection.begin_nested():
            connection.execute(insert(server_secret).values(name=name, value=secrets.token_urlsafe(48)))
    except IntegrityError:
        pass
    return connection.execute(select(server_secret.c.value).where(server_secret.c.name == name)).scalar_one()
