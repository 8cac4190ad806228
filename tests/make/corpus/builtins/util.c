#include "util.h"
int twice(int x) { return TWICE(x); }
