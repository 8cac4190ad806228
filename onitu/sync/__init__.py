"""The Onitu sync hub: one folder kept in sync across many storage services.

Two kinds of process, both clients of the space: the referee (:mod:`onitu.sync.referee`), which decides, and one
plug per service (:mod:`onitu.sync.plug`), which reports what its replica holds and carries out the referee's
orders. Their tuples are :mod:`onitu.sync.tuples`. Grouped by concern:

- :mod:`~onitu.sync.drivers`: the storage contract every backend implements, and the backends;
- :mod:`~onitu.sync.decide`: from what replicas hold to the orders that make them agree (no I/O);
- :mod:`~onitu.sync.state`: what the referee keeps (agreed versions, replicas' entries, orders under way, what
  awaits the user);
- :mod:`~onitu.sync.plug`: reports, orders and file transfers of one service;
- :mod:`~onitu.sync.hub`: the hub client the CLI (:mod:`~onitu.sync.cli`) and the API call, answered by the
  referee's :mod:`~onitu.sync.commands`; :mod:`~onitu.sync.settings`: the hub's sections of ``onitu.yaml``.
"""
