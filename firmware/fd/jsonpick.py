# Pick a few keys out of a JSON document without parsing the rest (GC heap).
#
# json.loads of a shadow delta or get document builds every value: an 8 KB string in an
# unknown key costs the packet's 8 KB, the parser's growing buffer (it grows in small steps,
# so it needs ever larger free blocks) and the 8 KB result, on a heap whose largest free
# block is ~10-20 KB (issue 16: an 8 KB delta needed 144 KB of heap). Here the document is
# walked byte by byte in the buffer it arrived in (a memoryview into the MQTT packet) and
# only the values asked for are parsed, each from its own small slice. Hand-written: no
# MicroPython library parses JSON incrementally.
import json

KEY_MAX = 128  # a longer key is refused (a desired key that long is not one of the device's)
VALUE_MAX = 2048  # a value longer than this is not parsed: placeholder() stands for it


def _ws(b, i, n):
    while i < n and b[i] in (32, 9, 10, 13):
        i += 1
    return i


def _skip_str(b, i, n):
    i += 1
    while i < n:
        c = b[i]
        if c == 92:  # backslash: skip the escaped byte
            i += 2
        elif c == 34:
            return i + 1
        else:
            i += 1
    raise ValueError("unterminated string")


def _skip(b, i, n):
    """End index of the value that starts at b[i]."""
    if i >= n:
        raise ValueError("value expected at byte %d" % i)
    c = b[i]
    if c == 34:
        return _skip_str(b, i, n)
    if c == 123 or c == 91:
        what = "object" if c == 123 else "array"
        stack = []  # the closing bytes expected
        while i < n:
            c = b[i]
            if c == 34:
                i = _skip_str(b, i, n)
                continue
            if c == 123:
                stack.append(125)
            elif c == 91:
                stack.append(93)
            elif c == 125 or c == 93:
                if not stack or stack.pop() != c:
                    raise ValueError("mismatched %s at byte %d" % (chr(c), i))
                if not stack:
                    return i + 1
            i += 1
        raise ValueError("unterminated " + what)
    j = i
    while j < n and b[j] not in (44, 125, 93, 32, 9, 10, 13):
        j += 1
    if j == i:
        raise ValueError("value expected at byte %d" % i)
    return j


def members(b, i=0, n=None):
    """[(key, start, end)] of the object at b[i:n] (blanks around it allowed): its keys
    (str) and where each value lies in `b`. Raises ValueError if it is not a JSON object."""
    if n is None:
        n = len(b)
    i = _ws(b, i, n)
    if i >= n or b[i] != 123:
        raise ValueError("not a JSON object")
    out = []
    i = _ws(b, i + 1, n)
    if i < n and b[i] == 125:
        if _ws(b, i + 1, n) != n:
            raise ValueError("extra data after the object at byte %d" % (i + 1))
        return out
    while True:
        if i >= n or b[i] != 34:
            raise ValueError("key expected at byte %d" % i)
        k = _skip_str(b, i, n)
        if k - i > KEY_MAX:
            raise ValueError("a key of %d bytes" % (k - i))
        key = json.loads(bytes(b[i:k]))
        i = _ws(b, k, n)
        if i >= n or b[i] != 58:
            raise ValueError("':' expected at byte %d" % i)
        i = _ws(b, i + 1, n)
        e = _skip(b, i, n)
        out.append((key, i, e))
        i = _ws(b, e, n)
        if i < n and b[i] == 44:
            i = _ws(b, i + 1, n)
        elif i < n and b[i] == 125:
            if _ws(b, i + 1, n) != n:
                raise ValueError("extra data after the object at byte %d" % (i + 1))
            return out
        else:
            raise ValueError("',' or '}' expected at byte %d" % i)


def find(items, key):
    """(start, end) of `key` among members() items, or None."""
    for k, s, e in items:
        if k == key:
            return s, e
    return None


def value(b, s, e):
    """The value in b[s:e], parsed (at most VALUE_MAX bytes, else its placeholder())."""
    if e - s > VALUE_MAX:
        return placeholder(e - s)
    return json.loads(bytes(b[s:e]))


def placeholder(size):
    """What an error message shows for a value too large to parse on the board."""
    return "<a %d-byte value>" % size


def pick(b, keys, i=0, n=None):
    """{key: value} for every member of the object at b[i:n]: the values of `keys` parsed,
    any other key mapped to None (known by name only, its value never built)."""
    out = {}
    for k, s, e in members(b, i, n):
        out[k] = value(b, s, e) if k in keys else None
    return out
