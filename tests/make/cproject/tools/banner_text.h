#define BANNER_TEXT "calc 1.0"
