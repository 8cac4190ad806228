all:;
else
