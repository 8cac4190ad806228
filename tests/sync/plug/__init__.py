"""Tests of onitu.sync.plug."""
