#include "calc.h"

int main(void) { return calc_mul(6, 7) == 42 && calc_mul(3, 0) == 0 ? 0 : 1; }
