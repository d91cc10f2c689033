"""The officers' review console: a server-rendered web app over the cases, for human review.

``accounts`` (officers, sessions, lockouts) and ``nonces`` (one-time form nonces) keep their state in one
SQLite file (``settings.officers_path``, mode 0600); ``app`` builds the Flask app (``create_app``) and ``views``
holds its pages. Reading cases goes through :mod:`streams.ops.review`; decisions are sent as ``ReviewDecision``
records, never written to ClickHouse here. Importing this package opens nothing.
"""
