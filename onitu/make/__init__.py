"""A distributed, GNU-make-compatible make: the Makefile reader, GNU make's update algorithm, the build
coordinator and its workers."""
