"""``maskwatch replay``: a camera's zone rules on recorded footage, and what would have fired, as an HTML report.

``run.replay`` decodes the file once and runs the config's model once per frame; each variant (the rules as
they are, and a what-if made of ``--set`` changes) has its own ``MaskTracker`` and ``ZoneEngine`` on the same
detections. Nothing is published: no sink, no outbox. ``report.write_report`` turns the result into one
self-contained HTML file (thumbnails as data URIs, plots as inline SVG). Imports the runtime; the runtime never
imports it.
"""
