"""Helpers available inside every TRE workspace."""
