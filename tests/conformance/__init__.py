"""The driver conformance suite, run against every driver."""
