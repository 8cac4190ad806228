"""Tests of onitu.sync.state."""
