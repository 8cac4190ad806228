%.o a: b ;
