echo "V = 1.0" > VERSION-FILE.new; if cmp -s VERSION-FILE VERSION-FILE.new; then rm VERSION-FILE.new; else mv VERSION-FILE.new VERSION-FILE; echo "V = 1.0" >&2; fi
