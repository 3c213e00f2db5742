"""linkband-historyd: the local history-data daemon of the Link Band SDK.

Processes: the supervisor (``supervisor``), the writer (``writer``, the only
process that writes the database) and the query server (``query_server``).
The wire protocol is the client's: ``linkband_history.protocol``.
"""
__version__ = "0.1.0"
