"""Lintas dashboards package."""
