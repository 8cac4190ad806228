"""The hub you can see: a REST API, live events, a web page and Prometheus metrics, in one supervised process.

``settings`` (the ``api`` section of onitu.yaml), ``auth`` (the token), ``app`` (the routes, on the hub client
:mod:`onitu.sync.hub`), ``events`` (server-sent events from the space's notify streams), ``watcher`` (process
restarts and failovers as events), ``metrics`` (``/metrics``), ``context`` (what requests share), ``process``
(uvicorn, the heartbeat), ``static/`` (the page: plain HTML, CSS and JavaScript, no build step).
"""
