#include <stdio.h>
#include <math.h>
#include "util.h"
int twice(int);
int main(void) { printf("%s %d %.0f\n", GREETING, twice(2), sqrt(16.0)); return 0; }
