all: x.o
x.o: x.c: %.c
