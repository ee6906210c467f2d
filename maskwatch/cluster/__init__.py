"""Cluster mode: cameras sharded over worker actors on a Ray cluster (the ``[cluster]`` extra).

``driver`` places and watches the workers (``maskwatch run`` with a ``cluster:`` section or ``--ray``);
``worker`` is the actor that runs the single-machine ``Pipeline`` for its cameras; ``metrics`` serves the
cluster-wide figures. Nothing outside this package imports ``ray``, and nothing here is imported unless a run
asks for a cluster.
"""
