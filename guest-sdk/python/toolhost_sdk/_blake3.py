"""BLAKE3 in pure Python, for the forwarded key only.

The forwarded ``Idempotency-Key`` is blake3 in derive-key mode
(``forwarded.py``), and ``hashlib`` has no blake3. componentize-py cannot
load native extensions, so the ``blake3`` package from PyPI is out. The
inputs hashed here are a few hundred bytes, once per request: speed does
not matter, a correct tree does (inputs over one 1 KiB chunk are hashed
too). Written from the BLAKE3 specification; the unit tests check it
against the reference implementation.
"""

_MASK = 0xFFFFFFFF
_IV = (
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
    0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
)
_PERMUTATION = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
_BLOCK_LEN = 64
_CHUNK_LEN = 1024

_CHUNK_START = 1 << 0
_CHUNK_END = 1 << 1
_PARENT = 1 << 2
_ROOT = 1 << 3
_DERIVE_KEY_CONTEXT = 1 << 5
_DERIVE_KEY_MATERIAL = 1 << 6


def _g(s, a, b, c, d, mx, my):
    s[a] = (s[a] + s[b] + mx) & _MASK
    x = s[d] ^ s[a]
    s[d] = ((x >> 16) | (x << 16)) & _MASK
    s[c] = (s[c] + s[d]) & _MASK
    x = s[b] ^ s[c]
    s[b] = ((x >> 12) | (x << 20)) & _MASK
    s[a] = (s[a] + s[b] + my) & _MASK
    x = s[d] ^ s[a]
    s[d] = ((x >> 8) | (x << 24)) & _MASK
    s[c] = (s[c] + s[d]) & _MASK
    x = s[b] ^ s[c]
    s[b] = ((x >> 7) | (x << 25)) & _MASK


def _compress(cv, block, counter, block_len, flags):
    """The compression function: 16 output words."""
    s = list(cv) + list(_IV[:4]) + [
        counter & _MASK, (counter >> 32) & _MASK, block_len, flags,
    ]
    m = list(block)
    for round_ in range(7):
        _g(s, 0, 4, 8, 12, m[0], m[1])
        _g(s, 1, 5, 9, 13, m[2], m[3])
        _g(s, 2, 6, 10, 14, m[4], m[5])
        _g(s, 3, 7, 11, 15, m[6], m[7])
        _g(s, 0, 5, 10, 15, m[8], m[9])
        _g(s, 1, 6, 11, 12, m[10], m[11])
        _g(s, 2, 7, 8, 13, m[12], m[13])
        _g(s, 3, 4, 9, 14, m[14], m[15])
        if round_ < 6:
            m = [m[i] for i in _PERMUTATION]
    for i in range(8):
        s[i] ^= s[i + 8]
        s[i + 8] ^= cv[i]
    return s


def _words(block):
    """A block of up to 64 bytes as 16 little-endian words, zero-padded."""
    block = block + bytes(_BLOCK_LEN - len(block))
    return [int.from_bytes(block[i:i + 4], "little") for i in range(0, _BLOCK_LEN, 4)]


class _Output:
    """A node not yet compressed: a chunk's last block or a parent."""

    def __init__(self, cv, block, counter, block_len, flags):
        self.cv, self.block, self.counter = cv, block, counter
        self.block_len, self.flags = block_len, flags

    def chaining_value(self):
        return _compress(self.cv, self.block, self.counter, self.block_len, self.flags)[:8]

    def root_bytes(self, length):
        out = bytearray()
        counter = 0
        while len(out) < length:
            words = _compress(self.cv, self.block, counter, self.block_len, self.flags | _ROOT)
            out += b"".join(w.to_bytes(4, "little") for w in words)
            counter += 1
        return bytes(out[:length])


def _chunk_output(key, chunk, counter, flags):
    """The output node of one chunk (at most 1 KiB, at least one block)."""
    cv = list(key)
    blocks = [chunk[i:i + _BLOCK_LEN] for i in range(0, len(chunk), _BLOCK_LEN)] or [b""]
    for i, block in enumerate(blocks[:-1]):
        start = _CHUNK_START if i == 0 else 0
        cv = _compress(cv, _words(block), counter, _BLOCK_LEN, flags | start)[:8]
    start = _CHUNK_START if len(blocks) == 1 else 0
    last = blocks[-1]
    return _Output(cv, _words(last), counter, len(last), flags | start | _CHUNK_END)


def _parent_output(left, right, key, flags):
    return _Output(list(key), list(left) + list(right), 0, _BLOCK_LEN, flags | _PARENT)


def _hash(data, key, flags, length=32):
    chunks = [data[i:i + _CHUNK_LEN] for i in range(0, len(data), _CHUNK_LEN)] or [b""]
    stack = []
    for counter, chunk in enumerate(chunks[:-1]):
        cv = _chunk_output(key, chunk, counter, flags).chaining_value()
        total = counter + 1
        # Merge completed subtrees: one per trailing zero bit of the count.
        while total & 1 == 0:
            cv = _parent_output(stack.pop(), cv, key, flags).chaining_value()
            total >>= 1
        stack.append(cv)
    output = _chunk_output(key, chunks[-1], len(chunks) - 1, flags)
    while stack:
        output = _parent_output(stack.pop(), output.chaining_value(), key, flags)
    return output.root_bytes(length)


def blake3(data: bytes) -> bytes:
    """The 32-byte BLAKE3 hash of ``data``."""
    return _hash(bytes(data), _IV, 0)


def derive_key(context: str, material: bytes) -> bytes:
    """BLAKE3's derive-key mode: 32 bytes for ``material`` under ``context``."""
    context_key = _hash(context.encode("utf-8"), _IV, _DERIVE_KEY_CONTEXT)
    key = [int.from_bytes(context_key[i:i + 4], "little") for i in range(0, 32, 4)]
    return _hash(bytes(material), key, _DERIVE_KEY_MATERIAL)
