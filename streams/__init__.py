"""The running parts of Lintas, above the pure core in :mod:`agents`: one room per role.

* ``worker/``: the pipeline worker (the Faust app, the batch runtime, one handler module per agent);
* ``post/``: what a border post runs (validate, spool, sign, send);
* ``ops/``: commands people run against the data (erasure, breach report, export, calibration,
  review, migrations, watchlist loads, lag);
* ``console/``: the officers' review console; ``cli/``: the ``lintas`` command;
* ``sim/``: simulated traffic, face-template models and the in-memory dedup network for benches and tests.

The modules at this level are what every room shares: the settings, the client factories, the
topics and their ACLs, the key stores, posts' keys, the compacted-partition and watchlist readers,
SQL text handling. A room imports only these and itself (``cli`` and ``console`` excepted:
see ``tests/unit/test_layers.py``).
"""
