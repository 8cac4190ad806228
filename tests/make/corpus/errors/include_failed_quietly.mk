# A -include'd makefile whose rule fails is quiet while makefiles are remade; a target that needs it then gets
# GNU 4.3's "No rule to make target", and what the makefile phase made is not made again.
all: x.d dep
	@echo all
x.d: dep
	@echo making x.d; false
-include x.d
dep:
	@echo dep
