"""A distributed, GNU-make-compatible make: the Makefile reader and dependency graph, the driver and its workers."""
