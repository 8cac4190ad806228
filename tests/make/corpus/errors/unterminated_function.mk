X := $(subst a,b
all:;
