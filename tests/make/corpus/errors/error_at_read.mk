ifeq (1,1)
  $(error read-time error)
endif
