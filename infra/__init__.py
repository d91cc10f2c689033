"""Lintas infra package."""
