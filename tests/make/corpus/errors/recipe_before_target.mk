X = 1
	echo hi
all:;
