"""The daemon's processes: the supervisor, the skeleton every child shares, the
writer (the only process that writes the database), the query broker and its pool of
workers, the scheduler, and what they use to talk to systemd and to subscribers
(the event publisher). The top layer: nothing below imports from here.
"""
