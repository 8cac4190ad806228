X := $(word x,a b)
