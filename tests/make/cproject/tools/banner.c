#include <stdio.h>
#include "banner_text.h"

int main(void)
{
    printf("#define CALC_BANNER \"%s\"\n", BANNER_TEXT);
    return 0;
}
