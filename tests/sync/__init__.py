"""Tests of onitu.sync: the hub end to end, the referee in-process, the hub client, config; by concern below."""
