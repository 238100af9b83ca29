"""Writes the scanner benchmark corpus: about TOTAL_MB (default 1000) MB of
source-like text in 256 files of ~4 MB (16 directories), with 300 real
Keyward keys (right checksum) and 102,400 lookalikes (wrong checksum, a real
key glued inside a longer token, or one character short), each on a line of
its own. Deterministic: the same arguments give the same bytes.

    python3 gen_corpus.py OUT_DIR [TOTAL_MB]

Prints one line per real key, `path<TAB>line<TAB>sha256-hex` (path relative
to OUT_DIR, line 1-based, the SHA-256 of the key as `keyward scan --json`
shows it in `token_hash`), then `# lookalikes<TAB>N` and `# regex-lines<TAB>M`:
how many lines the published regex matches (real keys and the lookalikes
that are not one character short).
"""
import hashlib
import os
import random
import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FILES = 256
DIRS = 16
KEYS = 300
LOOKALIKES_PER_FILE = 400


def checksum(r):
    """base62(CRC-32(r)), 6 digits: docs/key-format.md."""
    n, out = zlib.crc32(r.encode()), ""
    for _ in range(6):
        n, d = divmod(n, 62)
        out = ALPHABET[d] + out
    return out


def b62(rng, n):
    return "".join(rng.choices(ALPHABET, k=n))


def key(rng, prefix):
    r = b62(rng, 40)
    return prefix + r + checksum(r)


def prefix(rng):
    return rng.choice(["sk-kw-", "sk-kwadmin-"])


def lookalike(rng):
    """Something that is not a key, and whether the published regex (which
    checks neither boundaries nor checksum) matches it."""
    kind = rng.randrange(5)
    if kind == 0:
        return b62(rng, 3) + key(rng, prefix(rng)), True  # glued on the left
    if kind == 1:
        return key(rng, prefix(rng)) + b62(rng, 2), True  # glued on the right
    if kind == 2:
        return key(rng, prefix(rng))[:-1], False  # one character short
    while True:  # right shape, wrong checksum
        r, c = b62(rng, 40), b62(rng, 6)
        if checksum(r) != c:
            return prefix(rng) + r + c, True


WORDS = ("let mut self fn return if else match for while impl struct pub use "
         "request response client server config value error result option "
         "token budget project usage ledger limit upstream model stream key "
         "sk skip kw kwargs ask task desk "
         "0 1 42 true false None null = == += -> => ( ) { } [ ] ; , . :: & - #").split()


def line_pool(rng, n=50_000):
    """Source-like lines: indented words and now and then a quoted token."""
    pool = []
    for _ in range(n):
        indent = " " * (4 * rng.randrange(4))
        words = rng.choices(WORDS, k=rng.randrange(3, 14))
        if rng.random() < 0.1:
            words.append('"' + b62(rng, rng.randrange(8, 40)) + '"')
        pool.append(indent + " ".join(words) + "\n")
    return pool


def main():
    out = sys.argv[1]
    total_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rng = random.Random(20240601)
    pool = line_pool(rng)
    avg = sum(map(len, pool)) / len(pool)
    per_file = int(total_mb * 1_000_000 / FILES / avg)
    lookalikes = regex_lines = 0
    for f in range(FILES):
        lines = rng.choices(pool, k=per_file)
        keys = KEYS // FILES + (1 if f < KEYS % FILES else 0)
        spots = rng.sample(range(per_file), LOOKALIKES_PER_FILE + keys)
        for i in spots[:LOOKALIKES_PER_FILE]:
            text, matches = lookalike(rng)
            lines[i] = f'    let token = "{text}";\n'
            lookalikes += 1
            regex_lines += matches
        rel = os.path.join(f"d{f % DIRS:02}", f"file{f:03}.rs")
        for i in spots[LOOKALIKES_PER_FILE:]:
            k = key(rng, prefix(rng))
            lines[i] = f'API_KEY = "{k}"\n'
            print(f"{rel}\t{i + 1}\t{hashlib.sha256(k.encode()).hexdigest()}")
            regex_lines += 1
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.writelines(lines)
    print(f"# lookalikes\t{lookalikes}")
    print(f"# regex-lines\t{regex_lines}")


if __name__ == "__main__":
    main()
