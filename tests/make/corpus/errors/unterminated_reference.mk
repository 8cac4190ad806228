X := $(foo
all:;
