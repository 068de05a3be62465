"""Alembic migrations for the registry and egress tables (run via `hub.db.upgrade`)."""
