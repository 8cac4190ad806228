all:
	@echo $(error recipe error $@)
