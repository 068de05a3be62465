"""The platform kernel: settings, secrets, the database, the audit log and its migrations.

Everything else in the TRE builds on these; the kernel imports nothing of the TRE above it.
"""
