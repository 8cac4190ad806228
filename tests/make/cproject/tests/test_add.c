#include "calc.h"

int main(void) { return calc_add(2, 3) == 5 && calc_add(-1, 1) == 0 ? 0 : 1; }
