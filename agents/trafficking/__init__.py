"""Trafficking-pattern rules: pseudonymous facts in, explainable alerts for human review out.

The package: :mod:`.config` (the rules file, typed), :mod:`.facts` (what ingest and dedup
send), :mod:`.state` (what is remembered per key), :mod:`.rules` (the rules themselves) and
:mod:`.engine` (one fact and its key's state in, the new state and alerts out).

No single indicator proves trafficking (UNODC); each alert is a reason for a
trained officer to look, with the evidence that raised it. Nothing here decides
about a person.

How it runs. Ingest turns every crossing into a few :class:`Fact` s keyed by a
pseudonymous id (``doc:<document token>`` for the traveller and for each escort,
``sponsor:<token>`` for an unregistered sponsor), every landing into one keyed by
its vessel (or site), and dedup turns every decision on a document into one (the
subject seen with the document; several documents of one subject come from links).
Facts go to ``trafficking.facts`` keyed by that id, so everything about one key
lands on one partition, and the ``trafficking_rules`` agent keeps one
:class:`KeyState` per key in a changelog-backed table. :func:`evaluate` is the whole rule engine: one fact and
its key's state in, the new state and any alerts out. It is pure and
deterministic:

* windows run on event time (the facts' own timestamps), not on the clock;
* a fact already in the state changes nothing, so a replay after a crash (Kafka
  redelivers what was not committed) neither double-counts nor re-alerts;
* an alert's id is its rule, its key and its first evidence event, and its
  version is its evidence count: a pattern instance is one alert that is
  updated as evidence grows (same id, more evidence), never repeated.

The rules and the indicators they map to (codes in ``rules.toml``):

``escort_fanout``
    One escort document with many travellers not declared as close family
    within a window. UNODC Human Trafficking Indicators: victims "are
    accompanied by others" who speak for them; ILO forced-labour indicator
    *deception*. HIGH when a minor is among them.
``sponsor_fanout``
    One unregistered employer, agency or private sponsor declared by many
    travellers. ILO *deception*; recruitment outside licensed channels
    (Bali Process screening guidance, Indonesia's P3MI licensing).
``minor_unrelated_adult`` / ``unaccompanied_minor``
    A minor crossing with companions of whom none is a parent or legal
    guardian, or alone. UNODC indicators for children.
``shuttling``
    A document that exits repeatedly within a window while escorting changing
    companions (routine commuters and crew exempt). UNODC / IOM escort
    indicators.
``document_multiple_subjects`` / ``subject_multiple_documents``
    One document carried by several biometric subjects, or one subject
    presenting several documents (from dedup). UNODC: false or borrowed
    documents; ILO *retention of identity documents*.
``impossible_travel``
    One document at two posts faster than anyone can travel between them.
``route.<name>``
    A document's crossings following a configured risk route (Riau islands →
    Singapore → Cambodia; transit through Malaysia / Singapore to the Middle
    East) with the configured purposes, or declaring such a destination.
``non_procedural_work_exit`` / ``tourist_exit_recruitment_corridor``
    Work exits without a placement id; tourist exits of working-age nationals
    through the land and sea corridors known for non-procedural placement
    (Entikong, Aruk/Sambas, Nunukan). The second is LOW severity: the data of
    one crossing cannot tell a tourist from a recruit.
``maritime_landing`` / ``repeat_vessel``
    Boat landings with many people or a high share of minors; the same vessel
    landing again.
``anomaly_score``
    A document whose window of crossings and escorted travellers an
    IsolationForest finds unusual (:mod:`agents.anomaly`); LOW, with the
    features that stand out as its explanation.
"""
