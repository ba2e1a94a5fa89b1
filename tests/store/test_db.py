"""Units of work: which database errors say the database is unavailable (503, try again) and which are ours."""
import pytest
from sqlalchemy.exc import DBAPIError

from app.errors import DatabaseUnavailable
from app.store.db import make_engine, read_unit, write_unit


@pytest.mark.parametrize("unit", [read_unit, write_unit])
def test_a_wrong_statement_is_not_taken_for_an_unavailable_database(engine, unit):
    with pytest.raises(DBAPIError) as raised, unit(engine) as connection:
        connection.exec_driver_sql("SELECT no_such_column FROM resource")
    assert not isinstance(raised.value, DatabaseUnavailable)


def test_a_database_file_that_cannot_be_opened_is_unavailable(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}")  # a directory
    with pytest.raises(DatabaseUnavailable), read_unit(engine):
        pass
