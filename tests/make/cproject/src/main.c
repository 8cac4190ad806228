#include <stdio.h>
#include <stdlib.h>
#include "calc.h"
#include "version.h"

int main(int argc, char **argv)
{
    long a = argc > 1 ? atol(argv[1]) : 6, b = argc > 2 ? atol(argv[2]) : 7;
    printf("%s: %ld + %ld = %ld, %ld * %ld = %ld\n", CALC_BANNER, a, b, calc_add(a, b), a, b, calc_mul(a, b));
    return 0;
}
