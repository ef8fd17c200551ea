"""Not imported in a workspace (spawner/light_start.py).

jsonschema imports ``rfc3987_syntax``, when it is installed, to check the ``iri`` string
formats; at import it builds an Earley parser of RFC 3987's grammar, 1.2 CPU-seconds, more
than half of what a JupyterLab server spends until it listens. No schema a Jupyter server
validates uses those formats, so in a workspace this module stands in front of the real one
and jsonschema goes on without them (it catches the ImportError).
"""

raise ImportError("rfc3987_syntax is left out of workspaces (a faster start); iri formats are not checked")
