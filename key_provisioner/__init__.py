"""The eLock key server: enrols locks, issues and revokes keys, pushes revocations.

A FastAPI admin API over SQLAlchemy (SQLite by default, PostgreSQL by URL),
with a background worker that talks CoAP over DTLS to the locks. Lock secrets
are sealed with a master key; PSKs are never stored, only re-derived.
"""
