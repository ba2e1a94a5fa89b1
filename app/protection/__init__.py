"""Field-level protection: protected element values encrypted in the stored bodies, and blind indexes in place of
their plaintext index rows (docs/security.md).

A key-encryption key (keyfile.py), kept outside the database, wraps the data keys stored in it (keys.py): value keys,
which encrypt values with AES-256-GCM (fields.py), and index keys, from which each protected search parameter's
HMAC-SHA256 key is derived with HKDF (blind.py). The store seals bodies and blinds index rows on its one write path
and opens bodies on its one read path (service.py: Protection).
"""
