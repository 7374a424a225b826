#!/usr/bin/env python3
"""Writes stress.txt: edge cases of GPT-2's pattern, then seeded random text
drawn from characters of every class the pattern tells apart. Characters are
from Unicode 14 or older, where Go's and Python's tables agree.

    python3 testdata/make_stress.py > testdata/stress.txt
"""
import random
import sys

EDGES = [
    "Hello world", "Hello, world!", "hello world", " Hello", "Hello ", "Hello  ",
    "don't I'll we've they're she's I'm he'd", "DON'T I'LL WE'VE", "'s 't 're 've 'm 'll 'd",
    "''s ' s ?'s x'sy 'S 'Ll \u2019s", "rock'n'roll", "a'b'c'd",
    "\n", "\n\n", "\n\n\n", " \n", "\n ", "\t\tx", "  x", "   x", " \t x", "\r\n\r\nx",
    "today\n ", "today\n \n", "today\n  \n", "x \n y", "end with spaces   ",
    "3.14159 1,000,000 2nd 3rd 42nd 0x1F 1e-9 -7 +8",
    "0", "00", "000", "0000", "00000", "000000000", "0000000000000000", "00000000000000000",
    "caf\u00e9 cafe\u0301 na\u00efve \u00c5ngstr\u00f6m", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u8bf7\u8003\u8bd5\u6211\u7684\u8f6f\u4ef6\uff0112345",
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\U0001F600\U0001F44D \U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F1EB\U0001F1F7 \u2764\ufe0f",
    "\u00bd \u00b2 \u2460 \u216b \u0663\u0664 \uff11\uff12 \u0e51\u0e52", "x\u00b2+y\u00b2=z\u00b2",
    "a\u00a0b a\u3000b a\u2028b a\u2029b a\u0085b a\u1680b a\u2003b a\u202fb a\u205fb",
    "a\u200bb a\ufeffb a\u180eb a\u00adb", "a\x1cb a\x1db a\x1eb a\x1fb a\x0bb a\x0cb",
    " \u00a0x", "\u00a0 x", "\u3000\u3000x", "\u2028\nx",
    "<|endoftext|>", "hello <|endoftext|>", "<|fim_prefix|>",
    "https://example.com/path?q=1&r=[2]#frag", "user@example.org",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "if (a && b || !c) { x += 1; } else { y -= 2; }",
    "====================", "--", "...", "?!?!", "\u2014\u2013\u2026", "\u00ab\u00bb\u201c\u201d",
    "SGVsbG8gd29ybGQhIFRoaXMgaXMgYSBiYXNlNjQgYmxvYi4gSXQgaGFzIG5vIHNwYWNlcy4=",
]

POOLS = [
    (40, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    (12, "0123456789"),
    (25, " "),
    (6, "\n"),
    (2, "\t\r\x0b\x0c\x1c\x1d\x1e\x1f\u0085\u00a0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"),
    (8, "'''''stmdrevl"),
    (10, ".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`\"\u00a7\u00b6\u00a9\u00ae\u2122\u00b0"),
    (5, "\u00e9\u00e8\u00fc\u00f1\u00df\u00f8\u0142\u0151\u011f\u0219\u0301\u0308\u0327"),
    (5, "\u4e00\u4e8c\u4e09\u5927\u5c0f\u65e5\u6708\u3042\u3044\u30a2\u30a4\uac00\ub098"),
    (4, "\u0430\u0431\u0432\u0433\u0434\u03b1\u03b2\u03b3\u05d0\u05d1\u0627\u0628\u0915\u093e\u094d\u0e01\u0e34"),
    (3, "\u00bd\u00b2\u00b3\u2460\u2461\u2160\u216b\u0660\u0661\uff10\uff11\u0966"),
    (3, "\U0001F600\U0001F44D\U0001F680\u2764\ufe0f\u200d\u200b\ufeff\u00ad\ufffd"),
]


def main():
    rng = random.Random(20240520)
    out = []
    for e in EDGES:
        out.append(e)
        out.append("\n")
    # Long pieces: the heap path of the merge and long whitespace runs.
    out.append("a" * 300 + " " + "ab" * 200 + "\n")
    out.append("0" * 1000 + " " + "=" * 400 + "\n")
    out.append(" " * 300 + "x" + "\n" * 50 + " " * 7 + "\t" * 9 + "y\n")
    out.append("supercalifragilisticexpialidocious" * 8 + "\n")
    weights = [w for w, _ in POOLS]
    n = 0
    while n < 60000:
        pool = rng.choices(POOLS, weights=weights)[0][1]
        run = rng.choice([1, 1, 1, 2, 3, 5, 8])
        s = "".join(rng.choice(pool) for _ in range(run))
        out.append(s)
        n += len(s.encode("utf-8"))
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
