#!/usr/bin/env python3
"""Generates runtime/unicode_tables.cpp: the Unicode facts the WordPiece tokenizer needs, from Python's unicodedata.

    python3 scripts/gen_unicode_tables.py > runtime/unicode_tables.cpp

The tables follow the Unicode version of the Python that runs this script (unicodedata.unidata_version, written into
the file's header); the committed file was made with Python 3.11 (Unicode 14.0.0). The output is deterministic for a
given Unicode version.

What is emitted (declared in runtime/unicode_tables.h):
  * general category, collapsed to the groups BERT's rules ask about, as ranges (each entry starts a run that lasts
    until the next entry);
  * simple per-character lowercase mappings as arithmetic runs (first, last, delta, stride), plus the characters that
    lowercase to more than one character. This is `chr(c).lower()` for each character alone, without the Final_Sigma
    context rule of `str.lower()`: Hugging Face's tokenizers lowercases character by character;
  * one level of canonical decomposition (at most two characters, checked) for every character except the Hangul
    syllables, which are decomposed arithmetically in C++;
  * canonical combining classes, as ranges of equal nonzero class.

Before writing, the script checks that full decomposition through its own tables plus canonical reordering equals
unicodedata.normalize("NFD", c) for every code point, and that the lowercase runs reproduce every mapping.
"""

import sys
import unicodedata

# Category groups; the values must match tessera::runtime::unicode::CategoryGroup in runtime/unicode_tables.h.
GROUPS = {
    "Other": 0,
    "Cc": 1,
    "Cf": 2,
    "Co": 3,
    "Cs": 4,
    "Cn": 5,
    "Zs": 6,
    "Zl": 7,
    "Zp": 8,
    "P": 9,
    "Mn": 10,
}

MAX_CP = 0x10FFFF
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3


def group_of(cp):
    cat = unicodedata.category(chr(cp))
    if cat in GROUPS:
        return GROUPS[cat]
    if cat.startswith("P"):
        return GROUPS["P"]
    return GROUPS["Other"]


def category_runs():
    runs = []
    prev = None
    for cp in range(MAX_CP + 1):
        g = group_of(cp)
        if g != prev:
            runs.append((cp, g))
            prev = g
    return runs


def lowercase_maps():
    single, multi = {}, {}
    for cp in range(MAX_CP + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) == 1:
            single[cp] = ord(low) - cp
        else:
            multi[cp] = [ord(x) for x in low]
    return single, multi


def lowercase_runs(single):
    """Greedy runs of code points first, first + stride, ... that all map by the same delta."""
    runs = []
    cps = sorted(single)
    i = 0
    while i < len(cps):
        first = cps[i]
        delta = single[first]
        stride = 1
        last = first
        if i + 1 < len(cps) and single[cps[i + 1]] == delta and cps[i + 1] - first in (1, 2):
            stride = cps[i + 1] - first
        j = i + 1
        while j < len(cps) and cps[j] == last + stride and single[cps[j]] == delta:
            last = cps[j]
            j += 1
        runs.append((first, last, delta, stride))
        i = j
    return runs


def decompositions():
    table = {}
    for cp in range(MAX_CP + 1):
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, (hex(cp), d)
        assert not HANGUL_FIRST <= cp <= HANGUL_LAST
        table[cp] = parts
    return table


def combining_runs():
    runs = []
    for cp in range(MAX_CP + 1):
        ccc = unicodedata.combining(chr(cp))
        if ccc == 0:
            continue
        if runs and runs[-1][1] == cp - 1 and runs[-1][2] == ccc:
            runs[-1] = (runs[-1][0], cp, ccc)
        else:
            runs.append((cp, cp, ccc))
    return runs


def check(single, multi, lower_runs, decomp):
    mapped = {}
    for first, last, delta, stride in lower_runs:
        for cp in range(first, last + 1, stride):
            assert cp not in mapped
            mapped[cp] = delta
    assert mapped == single, "lowercase runs do not reproduce the mappings"

    def full(cp, out):
        if HANGUL_FIRST <= cp <= HANGUL_LAST:
            out.extend(ord(x) for x in unicodedata.normalize("NFD", chr(cp)))
        elif cp in decomp:
            for part in decomp[cp]:
                full(part, out)
        else:
            out.append(cp)

    for cp in range(MAX_CP + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        out = []
        full(cp, out)
        # Canonical reordering: a stable sort by combining class inside each run of nonzero classes.
        i = 0
        while i < len(out):
            if unicodedata.combining(chr(out[i])) == 0:
                i += 1
                continue
            j = i
            while j < len(out) and unicodedata.combining(chr(out[j])) != 0:
                j += 1
            out[i:j] = sorted(out[i:j], key=lambda c: unicodedata.combining(chr(c)))
            i = j
        assert "".join(map(chr, out)) == unicodedata.normalize("NFD", chr(cp)), hex(cp)


def rows(items, indent="    ", width=120):
    """Fills lines of at most `width` columns with the items, separated by spaces."""
    lines = []
    line = indent
    for item in items:
        if line != indent and len(line) + 1 + len(item) > width:
            lines.append(line)
            line = indent
        line = line + item if line == indent else line + " " + item
    lines.append(line)
    return "\n".join(lines)


def main():
    runs = category_runs()
    single, multi = lowercase_maps()
    lower_runs = lowercase_runs(single)
    decomp = decompositions()
    ccc_runs = combining_runs()
    check(single, multi, lower_runs, decomp)

    python = sys.version.split()[0]
    multi_rows = [
        f"{{0x{cp:X}, {{{', '.join(f'0x{x:X}' for x in (low + [0, 0, 0])[:3])}}}}},"
        for cp, low in sorted(multi.items())
    ]
    out = sys.stdout
    out.write(
        f"""// GENERATED by scripts/gen_unicode_tables.py from the unicodedata of Python {python} (Unicode
// {unicodedata.unidata_version}). Do not edit: change the script and run
//   python3 scripts/gen_unicode_tables.py > runtime/unicode_tables.cpp
// {len(runs)} category runs, {len(lower_runs)} lowercase runs, {len(multi)} multi-character lowercase(s),
// {len(decomp)} canonical decompositions, {len(ccc_runs)} combining-class runs.
#include "runtime/unicode_tables.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>

namespace tessera::runtime::unicode {{

namespace {{

// clang-format off

struct CategoryRun {{
  uint32_t first;  // the run lasts until the next entry's first
  uint8_t group;   // a CategoryGroup
}};

constexpr CategoryRun kCategoryRuns[] = {{
{rows([f"{{0x{cp:X}, {g}}}," for cp, g in runs])}
}};

struct LowercaseRun {{
  uint32_t first, last;  // first, first + stride, ... up to last
  int32_t delta;         // lowercase = code point + delta
  uint8_t stride;
}};

constexpr LowercaseRun kLowercaseRuns[] = {{
{rows([f"{{0x{a:X}, 0x{b:X}, {d}, {s}}}," for a, b, d, s in lower_runs])}
}};

struct MultiLowercase {{
  uint32_t code_point;
  std::array<uint32_t, 3> lower;  // zero-padded
}};

constexpr MultiLowercase kMultiLowercase[] = {{
{rows(multi_rows)}
}};

struct Decomposition {{
  uint32_t code_point;
  uint32_t first, second;  // second is 0 for a one-character decomposition
}};

constexpr Decomposition kDecompositions[] = {{
{rows([f"{{0x{cp:X}, 0x{p[0]:X}, 0x{(p + [0])[1]:X}}}," for cp, p in sorted(decomp.items())])}
}};

struct CombiningRun {{
  uint32_t first, last;
  uint8_t ccc;
}};

constexpr CombiningRun kCombiningRuns[] = {{
{rows([f"{{0x{a:X}, 0x{b:X}, {c}}}," for a, b, c in ccc_runs])}
}};

// clang-format on

static_assert(std::size(kMultiLowercase) > 0);
static_assert(sizeof(kMultiLowercase[0].lower) / sizeof(uint32_t) >= {max(len(v) for v in multi.values())});

// Hangul syllables decompose arithmetically (Unicode, chapter 3.12).
constexpr uint32_t kHangulFirst = 0xAC00, kHangulLast = 0xD7A3;
constexpr uint32_t kLeadFirst = 0x1100, kVowelFirst = 0x1161, kTrailFirst = 0x11A7;
constexpr uint32_t kVowelCount = 21, kTrailCount = 28;

}}  // namespace

const char* unicode_version() {{ return "{unicodedata.unidata_version}"; }}

CategoryGroup category_group(char32_t cp) {{
  auto it = std::upper_bound(std::begin(kCategoryRuns), std::end(kCategoryRuns), static_cast<uint32_t>(cp),
                             [](uint32_t c, const CategoryRun& run) {{ return c < run.first; }});
  if (it == std::begin(kCategoryRuns)) return CategoryGroup::Unassigned;
  return static_cast<CategoryGroup>(std::prev(it)->group);
}}

uint8_t canonical_combining_class(char32_t cp) {{
  auto it = std::upper_bound(std::begin(kCombiningRuns), std::end(kCombiningRuns), static_cast<uint32_t>(cp),
                             [](uint32_t c, const CombiningRun& run) {{ return c < run.first; }});
  if (it == std::begin(kCombiningRuns)) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}}

void append_lowercase(char32_t cp, std::u32string& out) {{
  auto multi = std::lower_bound(std::begin(kMultiLowercase), std::end(kMultiLowercase), static_cast<uint32_t>(cp),
                                [](const MultiLowercase& m, uint32_t c) {{ return m.code_point < c; }});
  if (multi != std::end(kMultiLowercase) && multi->code_point == cp) {{
    for (uint32_t c : multi->lower) {{
      if (c != 0) out.push_back(static_cast<char32_t>(c));
    }}
    return;
  }}
  auto it = std::upper_bound(std::begin(kLowercaseRuns), std::end(kLowercaseRuns), static_cast<uint32_t>(cp),
                             [](uint32_t c, const LowercaseRun& run) {{ return c < run.first; }});
  if (it != std::begin(kLowercaseRuns)) {{
    --it;
    if (cp <= it->last && (cp - it->first) % it->stride == 0) {{
      out.push_back(static_cast<char32_t>(static_cast<int64_t>(cp) + it->delta));
      return;
    }}
  }}
  out.push_back(cp);
}}

void append_canonical_decomposition(char32_t cp, std::u32string& out) {{
  if (cp >= kHangulFirst && cp <= kHangulLast) {{
    uint32_t index = cp - kHangulFirst;
    out.push_back(static_cast<char32_t>(kLeadFirst + index / (kVowelCount * kTrailCount)));
    out.push_back(static_cast<char32_t>(kVowelFirst + index % (kVowelCount * kTrailCount) / kTrailCount));
    if (index % kTrailCount != 0) out.push_back(static_cast<char32_t>(kTrailFirst + index % kTrailCount));
    return;
  }}
  auto it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), static_cast<uint32_t>(cp),
                             [](const Decomposition& d, uint32_t c) {{ return d.code_point < c; }});
  if (it == std::end(kDecompositions) || it->code_point != cp) {{
    out.push_back(cp);
    return;
  }}
  append_canonical_decomposition(static_cast<char32_t>(it->first), out);
  if (it->second != 0) append_canonical_decomposition(static_cast<char32_t>(it->second), out);
}}

}}  // namespace tessera::runtime::unicode
"""
    )


if __name__ == "__main__":
    main()
