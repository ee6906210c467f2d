"""The web console (``maskwatch run``, ``maskwatch edit``): live views, the zone editor, alerts, health, /metrics.

``server.start_console`` serves ``app.create_app`` for a ``backend`` (a running pipeline, or cameras only for
the editor) from a thread of the maskwatch process. Pages and their scripts ship in ``static/``; nothing is
fetched from elsewhere. Imports the runtime; the runtime never imports it.
"""
