"""Pure domain logic, one module per concern: what each of the worker's agents computes, tested without a broker.

Named after Faust's agents, whose cores these are: ingest, pseudonymisation, dedup and links,
calibration, trafficking rules, cases, watchlists, erasure plans, export. Functions take and
return values; the few stateful pieces (a shard's gallery, a key's rule state) are objects the
worker keeps and hands in. Imports only :mod:`schemas`.
"""
