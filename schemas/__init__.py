"""Lintas schemas package."""
