"""The database and everything that writes or maintains it: the schema and its
migrations, the writer's named write operations, the ingest batch, the FTS merger,
the data-directory lock, the send->commit latency histogram, restored id ranges,
and retention, size budget and optimize (run by the scheduler, written by the
writer).
"""
