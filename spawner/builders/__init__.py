"""Pure builders: a :class:`spawner.specs.WorkspaceSpec` in, a Kubernetes or Docker object out.

No I/O, no clock, no cluster: the spawners call them and send the result; the tests compare
the whole result with the object they expect.
"""
