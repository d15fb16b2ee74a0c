"""File names as the manifest spells them: any Linux file name, stored as a reversible, printable UTF-8 string.

A Linux file name is bytes; Python hands the ones that are not valid UTF-8 over as surrogate-escaped str, which
a pyarrow string column, a log line and OpenCV's path arguments cannot take. The manifest and every message
show `escape_path(name)`: valid UTF-8 as it is, each byte that is not valid UTF-8 as `\\xNN`, and a literal
backslash doubled, so the form is unambiguous and `unescape_path` gives the file's own name back.
"""

from __future__ import annotations

import os
import re

_ESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")


def escape_path(path: str | bytes | os.PathLike) -> str:
    """A file name (str, surrogate-escaped str, bytes or path) as printable UTF-8: `caf\\xe9.jpg`, `a\\\\b.png`."""
    raw = os.fsencode(path).replace(b"\\", b"\\\\")  # a backslash byte never sits inside a UTF-8 sequence
    return raw.decode("utf-8", "backslashreplace")


def unescape_path(text: str) -> str:
    """The file's own name (surrogate-escaped where it is not UTF-8) from its escape_path form; opens with open()."""
    raw = _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]),
                      text.encode("utf-8", "surrogateescape"))
    return os.fsdecode(raw)


def cv2_path(path: str) -> str | bytes:
    """A path for OpenCV's file functions: the str when it is valid UTF-8, else its bytes. OpenCV 4.x segfaults
    (it does not raise) when handed a str holding surrogates, and takes the bytes of the same name."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path
