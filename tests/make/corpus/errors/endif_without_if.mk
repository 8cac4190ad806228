all:;

endif
