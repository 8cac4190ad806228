all:;
include nofile.mk other.mk
