"""Summaries: computing the tiers (``summarizer`` for metrics, ``event_rollups``
for performance, log and alert rows), reading them (``rollup_reader``), bucket
arithmetic, the mergeable DDSketch and the bounded-memory percentile aggregate.
"""
