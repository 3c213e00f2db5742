"""CurveZMQ on the daemon's tcp:// sockets (``curve_auth``) and binding sockets
safely in the owner-only runtime directory (``sockets``).
"""
