"""Lintas streams package."""
