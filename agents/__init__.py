"""Lintas agents package."""
