FROM_FIRST = first
TARGETS += a
a:
	echo rule from first.mk
