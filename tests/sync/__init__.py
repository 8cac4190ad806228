"""Tests of onitu.sync: reconcile, rules, metadata, config."""
