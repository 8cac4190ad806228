"""The Majordomo: the hub's door for remote sync agents.

An agent (``onitu agent``, :mod:`.agent`) runs ordinary plugs for its own services on its own machine; its only
connection is one CURVE DEALER that it dials to the majordomo (:mod:`.server`, a supervised process of the hub).
Over it the majordomo relays the plugs' space requests, checked against what the agent's key was granted
(:mod:`.grants`), and the chunk requests of transfers both ways (:mod:`.relay`), so an agent behind NAT is a
replica like any other. Its services are recorded in the space (:mod:`.registry`) so the referee decides for them
and ``onitu status`` shows them, offline while the agent is away.
"""
