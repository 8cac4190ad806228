"""The process that runs template regexes RE2 cannot: Python's ``re``, where a runaway match harms no one.

Run as a script (``python -I -S regexworker.py``), not imported: it needs nothing but the standard library, so
it starts in milliseconds. Frames on stdin and stdout are a 4-byte big-endian length and a JSON body; a request
``[source, flags, [strings]]`` is answered with ``[indexes of the strings the pattern finds a match in]``.
The server kills this process when an answer is late and starts another.
"""

import json
import re
import struct
import sys


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"\0\0\0\0")  # ready
    stdout.flush()
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        source, flags, strings = json.loads(stdin.read(struct.unpack(">I", head)[0]))
        pattern = re.compile(source, flags)
        body = json.dumps([i for i, s in enumerate(strings) if pattern.search(s) is not None]).encode()
        stdout.write(struct.pack(">I", len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    main()
