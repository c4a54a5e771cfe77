"""Adversarial texts on which a fast encoder must give `tokenizers`' ids before it is used (fast_bpe.py).

Each group aims at a place where a regex engine (Rust's fancy-regex in tiktoken, Oniguruma in
`tokenizers`) or a rewritten pre-tokenizer could split differently: Unicode classes (letters,
numbers, whitespace, marks; a sample of every general category, unassigned code points and
characters newer than Python's database), whitespace runs before letters, digits and the end,
contractions in any case, digits of many scripts, emoji sequences, special-token strings and
very long words. About 60k characters: `tokenizers` encodes them in a fraction of a second.
"""

from __future__ import annotations

import random
import unicodedata
from functools import cache

# Every White_Space character, plus characters Python or old Unicode versions call space.
WHITESPACE = (
    "\t\n\v\f\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# Decimal digits of other scripts; the last rows were assigned after Unicode 14 (Python 3.11's
# database), so the two regex engines may know them from different Unicode versions.
DIGITS = (
    "0123456789",
    "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",  # Arabic-Indic
    "\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f8\u06f9",  # Extended Arabic-Indic
    "\u0966\u0967\u0968\u0969\u096a",  # Devanagari
    "\uff10\uff11\uff12\uff13\uff19",  # fullwidth
    "\U0001d7ce\U0001d7cf\U0001d7d0\U0001d7ff",  # mathematical bold / monospace
    "\u00b2\u00b3\u00b9\u00bc\u00bd\u2150\u2460\u2469\u2160\u216b\u3007\U00010107",  # No and Nl
    "\U00011f50\U00011f59\U0001e4f0\U0001e4f9",  # Kawi, Nag Mundari (Unicode 15)
    "\U000116d0\U00011bf0\U00016130\U00016d70\U0001e5f1\U00010d40\U0001ccf0",  # Unicode 16
)
NEWER_CHARACTERS = (  # letters and marks assigned in Unicode 15, 15.1 and 16
    "\U0001e030\U0001e04f\U00031350\U0002ebf0\u2ffc\u31ef\u1c89\u1c8a\ua7cb\ua7cd\U00010d4a\U000105c0"
)
EMOJI = (
    "\U0001f600\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 "
    "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f1fa\U0001f1f8\U0001f1e9\U0001f1ea 1\ufe0f\u20e3 #\ufe0f\u20e3 "
    "\u2764\ufe0f\u200d\U0001f525 \U0001f9d1\U0001f3ff\u200d\U0001f91d\u200d\U0001f9d1\U0001f3fb \u263a\ufe0e"
)
SCRIPTS = (
    "\u4e2d\u6587\u6587\u672c\uff0c\u6ca1\u6709\u7a7a\u683c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8 \u1100\u1161\u11a8 \U00020000\U0002a6d6",
    "e\u0301t\u00e9 \u0928\u092e\u0938\u094d\u0924\u0947 \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 "
    "\u0627\u0644\u0652\u0639\u064e\u0631\u064e\u0628\u0650\u064a\u064e\u0651\u0629 \u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd",
    "Z\u0334\u0321\u032a\u035aa\u0323\u0337l\u0338g\u0336o\u0360\u0361 a\u0308\u0308\u0308 \u1e9b\u0323 \ufb01\ufb03",
    "\u0130stanbul \u0131 \u00df \u1e9e \u03a3\u03c2\u03c3 \u212b \u212a \u01c5 \u1f88",
)
CONTRACTIONS = (
    "don't DON'T I'M he'S we'LL they'Re it'D you'VE 's 'S ''s 'ss ’s 'ſ 'ſt ' s '1 '\n 'll've O'Neil's",
    "rock'n'roll 'tis y'all can't've isn’t it'll'd'",
)
SPECIAL_LOOKALIKES = ("<|endoftext|>", "<s>", "</s>", "<unk>", "<pad>", "<mask>", "[CLS]", "[SEP]",
                      "<extra_id_0>", "<|begin_of_text|>", "<|eot_id|>")  # fmt: skip
SURROGATES = ("a\ud800b", "\udfff", "x\ud83d\ude00y", "\ud800\ud800 \udc00", "<|endoftext|>\ud800", "\ud83d")


@cache
def category_samples(per_category: int = 24) -> dict[str, str]:
    """Up to `per_category` code points of each general category, spread over planes 0-3 and 14."""
    members: dict[str, list[int]] = {}
    for code in (*range(0x40000), *range(0xE0000, 0xE0200), 0xF0000, 0x10FFFD):
        if not 0xD800 <= code < 0xE000:  # surrogates are tested on their own
            members.setdefault(unicodedata.category(chr(code)), []).append(code)
    samples = {}
    for category, codes in sorted(members.items()):
        step = max(1, len(codes) // per_category)
        samples[category] = "".join(chr(c) for c in codes[::step][:per_category])
    return samples


def _contexts(piece: str) -> str:
    """`piece` after and before a letter, a digit, a space and punctuation, then doubled."""
    return f"a{piece}1{piece} {piece}.{piece}{piece}b\n"


def _whitespace_texts() -> list[str]:
    texts = []
    for ws in WHITESPACE:
        texts.append("".join(_contexts(ws * n) for n in (1, 2, 3)) + f"{ws}{ws}1{ws}x{ws}")
    for run in (" ", "\t", "\n", " \t", "\r\n", "\n ", " \n", "\u3000", "\xa0 "):
        texts.append("|".join(f"a{run * n}b{run * n}1{run * n}.{run * n}" for n in (1, 2, 3, 5, 8, 17, 40)))
        texts.append(run * 1000 + "x" + run * 300)
    texts.append("a   1 a \t\n 1 \n1 1 1  1  2  x\n\n2024 \t 3.5\n\n\n  - item\r\n\r\n\tcode  \n")
    texts.append("  leading and trailing  \n\n")
    return texts


def _digit_texts() -> list[str]:
    texts = [_contexts(digits) + digits * 3 + " " + " ".join(digits) for digits in DIGITS]
    texts.append("3.14159 1,000,000 $4.2B (12%) 2024-01-31 +1-555-0100 0x1F 1e-9 v2.0.1 ~10k")
    texts.append("1234567890" * 40 + " " + " 12" * 50 + "\u0661\u0662\u0663abc\uff11\uff12x")
    return texts


def _long_texts() -> list[str]:
    rng = random.Random(0)
    letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6000))
    return [
        "a" * 5000,
        "ab" * 2500,
        "supercalifragilisticexpialidocious" * 150,
        letters,
        letters.upper(),
        "\U0001f600" * 800,
        "7" * 3000,
        "." * 3000 + "!?" * 500,
        "\u4e2d" * 2000,
        "https://example.com/" + "a1b2c3d4/" * 300,
        "=" * 2000 + "\n" + "-" * 2000,
    ]


def _random_texts(count: int = 40, length: int = 400) -> list[str]:
    """Seeded jumbles of characters drawn from every group above: contexts no list spells out."""
    pool = [*category_samples().values(), WHITESPACE, *DIGITS, NEWER_CHARACTERS, EMOJI, *SCRIPTS, "'sStT"]
    chars = "".join(pool) + " " * 200 + "e" * 100
    rng = random.Random(11)
    return ["".join(rng.choice(chars) for _ in range(length)) for _ in range(count)]


def special_texts(tokens: list[str]) -> list[str]:
    """Each special-token string alone, inside words, doubled, cut short and beside spaces."""
    texts = []
    for token in [*SPECIAL_LOOKALIKES, *tokens]:
        texts.append(
            f"{token}|a{token}b| {token} |{token}{token}|{token[:-1]} {token[1:]}|\n{token}\n1{token}1"
        )
    texts.append("before<|endoftext|>after<s>mid</s>  <unk><pad>\n<|endoftext|>")
    return texts


def adversarial_texts(added_tokens: list[str] = ()) -> list[str]:
    """The whole probe set; `added_tokens` are the tokenizer's own added/special token strings."""
    texts = [_contexts(sample) + sample for sample in category_samples().values()]
    texts.append(_contexts(NEWER_CHARACTERS) + "".join(_contexts(c) for c in NEWER_CHARACTERS))
    texts += [EMOJI, *SCRIPTS, *CONTRACTIONS, *(c.upper() for c in CONTRACTIONS)]
    texts += _whitespace_texts() + _digit_texts() + _long_texts() + _random_texts()
    texts += special_texts(list(added_tokens)) + list(SURROGATES)
    texts += ["", " ", "\n", "a", "\x00", "\x00\x01\x7f", "\ufffd"]
    return texts
