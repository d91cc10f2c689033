"""What a border post or landing site runs: validate its events, accept them to a durable spool, sign and send.

Nothing here reads the pipeline's topics or imports the worker: a post writes its input topic and nothing else.
"""
