ifeq a b
endif
