FROM_SECOND = second, included after $(FROM_FIRST)
TARGETS += b
b: ; echo rule from mk/second.mk
