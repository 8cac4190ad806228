all: dep
dep: missing.c
	echo never
