# Read a JSON document from a stream in small chunks, keeping all of it but its long strings.
#
# A shadow delta with an 8 KB string in a key the device does not know needs one free 8 KB
# block for the MQTT packet, on a heap whose largest free block is ~1-11 KB at the sizes a
# stock ESP32 has (issue 16). When that block cannot be had, fd.mqtt feeds the packet through
# a Skim in 1 KB chunks instead: every string longer than LIMIT bytes (key or value, quotes
# included) becomes the placeholder fd.jsonpick shows for a value too large to parse
# ("<a N-byte value>"), so the firmware gets the same answer it would from the whole document
# (jsonpick never parses such a value anyway) and the document costs what is left of it.
# Hand-written: no MicroPython library parses JSON incrementally.

LIMIT = 2048  # = fd.jsonpick.VALUE_MAX: a longer value is not parsed on the board either
BS = 92  # backslash
QUOTE = 34


class Skim:
    """Feed chunks with feed(); result() is the document with its long strings elided."""

    def __init__(self, limit=LIMIT):
        self.limit = limit
        self.out = []  # pieces kept (joined once per chunk)
        self.s = None  # the open string's bytes (None: not in a string, or it is too long)
        self.open = False  # inside a string
        self.slen = 0  # bytes of the open string so far, quotes included
        self.esc = False  # the last byte of the open string was a backslash
        self.elided = 0  # how many strings were replaced

    def _keep(self, piece):
        self.slen += len(piece)
        if self.s is None:
            return
        if self.slen > self.limit:
            self.s = None  # too long: the rest of it is only counted
        else:
            self.s.extend(piece)

    def _close(self):
        if self.s is None:
            self.out.append(('"<a %d-byte value>"' % self.slen).encode())
            self.elided += 1
        else:
            self.out.append(self.s)
        self.s = None
        self.open = False

    def feed(self, chunk):
        b = bytes(chunk)
        mv = memoryview(b)
        i = 0
        n = len(b)
        while i < n:
            if not self.open:  # between strings (no escapes there): keep all up to the next quote
                j = b.find(b'"', i)
                if j < 0:
                    self.out.append(b[i:])
                    break
                self.out.append(b[i:j])
                self.open = True
                self.s = bytearray(b'"')
                self.slen = 1
                i = j + 1
                continue
            if self.esc:  # the byte after a backslash belongs to the string, whatever it is
                self._keep(mv[i:i + 1])
                self.esc = False
                i += 1
                continue
            j = b.find(b'"', i)
            k = b.find(b"\\", i)
            if k >= 0 and (j < 0 or k < j):
                self._keep(mv[i:k + 1])
                self.esc = True
                i = k + 1
            elif j < 0:
                self._keep(mv[i:])
                break
            else:
                self._keep(mv[i:j + 1])
                i = j + 1
                self._close()
        if len(self.out) > 1:
            self.out[:] = [b"".join(self.out)]

    def result(self):
        """The document as bytes (its long strings elided); ValueError if a string is left open."""
        if self.open:
            raise ValueError("unterminated string")
        data = b"".join(self.out)
        self.out = []
        return data
