"""Reading for queries, below the commands and the scheduler's jobs that share
it: parameter parsing, the query engine (listings, aggregates, keyset paging),
answers from the summary tiers, the aggregates commands and jobs share, search,
log patterns and the time budget of a query.
"""
