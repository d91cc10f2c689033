"""The bottom layer: Avro contracts, the wire format, validation, the error hierarchy and reference geography.

Imports nothing of Lintas'. The ``.avsc`` files are the single source of truth for every event.
"""
