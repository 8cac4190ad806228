# eight spaces instead of a tab
all:
        echo hi
