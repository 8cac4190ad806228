# args: nosuchgoal
all:;
