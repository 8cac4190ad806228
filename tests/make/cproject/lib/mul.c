#include "calc.h"

long calc_mul(long a, long b)
{
    long r = 0;
    for (long i = 0; i < b; i++)
        r = calc_add(r, a);
    return r;
}
