"""The runtime (``maskwatch.pipeline``): config, sources, rings, stages, tracker, zones' hot reload, outbox, sinks.

Data flows one way: source -> frame ring -> inference -> detection ring -> analytics (tracker, zone engine)
-> outbox -> publisher (MQTT, JSONL). ``factory`` builds a config's segmenter; ``stages.Pipeline`` runs it all.
Imports ``maskwatch.engines`` and ``maskwatch.zones``; never the scenes, the benchmarks or the command line.
"""
