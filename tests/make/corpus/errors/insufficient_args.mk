X := $(word 2)
