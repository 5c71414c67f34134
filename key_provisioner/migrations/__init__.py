"""Alembic migrations of the key server (``script_location = key_provisioner:migrations``)."""
