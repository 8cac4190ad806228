X := $(wordlist 0,2,a b)
