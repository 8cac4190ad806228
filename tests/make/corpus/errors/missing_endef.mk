all:;
define X
never ends
