"""The pipeline worker: what ``lintas worker`` runs.

:mod:`.app` is the Faust app and the agents it hosts; :mod:`.stages` declares each agent once
(name, topic, batch size, handler, tables); :mod:`.runtime` consumes a batch, hands it to its
handler and performs what the handler returns in the one order of :mod:`.effects`, then commits.
One module per agent's handler (:mod:`.ingest`, :mod:`.dedup_shards`, :mod:`.dedup_links`,
:mod:`.trafficking_rules`, :mod:`.cases`, :mod:`.adjudications`, :mod:`.review_decisions`),
each calling the pure functions of :mod:`agents`; :mod:`.services` is what they share.
"""
