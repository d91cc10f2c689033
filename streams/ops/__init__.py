"""Commands people run against Lintas' data, each with its own record of processing.

Erasure, the breach report, identity disclosure and regional export, dedup calibration and
monitoring, officers' review reads and decisions, watchlist loads, ClickHouse migrations, the
regional summary and the agents' lag. None of them is part of the worker; the CLI and the
console call them.
"""
