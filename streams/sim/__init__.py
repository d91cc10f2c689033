"""Stand-ins for the world, for the demo, the benches and the tests: traffic, face templates, dedup network.

:mod:`.simulator` makes regional crossings and landings with planted patterns and their ground truth,
:mod:`.faces` the template models its captures come from, and :mod:`.dedup_network` runs the gallery
shards' pure steps over in-memory partitions in any schedule. All names and numbers are synthetic.
"""
