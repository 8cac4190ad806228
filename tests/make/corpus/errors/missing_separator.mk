# a line without separator
all:
	@echo hi
this is not a rule
