"""The bundled FastChat-protocol model worker (``mqgate worker``), torch-free.

Needs the ``local`` extra: ``pip install "mqgate[local]"``.
"""
