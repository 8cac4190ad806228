"""Tests of onitu.sync.decide."""
