#!/usr/bin/env python3
"""An independent GPT-2 encoder, to make the golden ids of the tests.

It follows GPT-2's own encoder.py: the text is cut by GPT-2's pattern with
Python's `regex` module, and each piece is merged by pair ranks, every
occurrence of the best pair at once, left to right. The pair ranks are
recovered from a .tiktoken vocabulary (tiktoken keeps token ranks, not
pairs): the pair that made token r is what merging its bytes with the
tokens below rank r leaves.

    go test ./tokenizer -run TestVocabularyIsOpenAIs -args -write-tiktoken /tmp/r50k_base.tiktoken
    python3 testdata/gpt2_reference.py /tmp/r50k_base.tiktoken TEXT OUT.u16

writes the ids of TEXT (UTF-8) to OUT.u16 as little-endian uint16. Needs only
Python 3 and Debian's python3-regex; no test runs it.
"""
import base64
import struct
import sys

import regex

PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def load_ranks(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def split_below(ranks, token, limit):
    """Merge token's bytes with tokens of rank < limit only."""
    parts = [bytes([b]) for b in token]
    while True:
        best, at = None, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < limit and (best is None or r < best):
                best, at = r, i
        if best is None:
            return parts
        parts[at : at + 2] = [parts[at] + parts[at + 1]]


def recover_pairs(ranks):
    pairs = {}
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        parts = split_below(ranks, token, rank)
        assert len(parts) == 2, (token, parts)
        pairs[tuple(parts)] = rank
    return pairs


def bpe(pairs, piece):
    """GPT-2's encoder.py bpe(), over bytes instead of its byte-to-unicode map."""
    word = tuple(bytes([b]) for b in piece)
    while len(word) > 1:
        cands = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
        bigram = min(cands, key=lambda p: pairs.get(p, float("inf")))
        if bigram not in pairs:
            break
        first, second = bigram
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                out.append(first + second)
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = tuple(out)
    return word


def main():
    vocab, text_path, out_path = sys.argv[1:4]
    ranks = load_ranks(vocab)
    pairs = recover_pairs(ranks)
    with open(text_path, "rb") as f:
        text = f.read().decode("utf-8")
    ids = []
    cache = {}
    for piece in PATTERN.findall(text):
        if piece not in cache:
            cache[piece] = [ranks[t] for t in bpe(pairs, piece.encode("utf-8"))]
        ids.extend(cache[piece])
    with open(out_path, "wb") as f:
        f.write(struct.pack("<%dH" % len(ids), *ids))
    print(f"{len(text.encode('utf-8'))} bytes, {len(ids)} ids -> {out_path}")


if __name__ == "__main__":
    main()
