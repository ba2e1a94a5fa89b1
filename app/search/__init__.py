"""Search: which parameters a request may carry, and the queries that answer it."""
