"""Storage: the schema, the database engine and units of work, and the resource write/read paths."""
