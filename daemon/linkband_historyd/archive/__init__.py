"""Archives of detail past its retention: the archiver (write, verify, restore)
and the ``.lbha`` file format (columnar, zstd; its byte-level spec is in
``file_format``).
"""
