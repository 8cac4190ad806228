all: a
a: b ;
b: ; $(error in $@)
