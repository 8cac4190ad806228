ifeq (a,a)
all:;
