"""What counts as visible text: a tweet or a display name must show something, not only characters
that render as nothing (a classic way to post blank tweets or take a blank name).

A character is invisible when it is
- whitespace, or of the Unicode categories Zs, Zl, Zp (separators), Cc (controls), Cf (format:
  zero-width space U+200B, joiners U+200C/U+200D, the byte-order mark U+FEFF, direction marks,
  tag characters...), Mn or Me (combining marks, which have nothing to show on by themselves,
  variation selectors among them);
- a Default_Ignorable_Code_Point of Unicode (DerivedCoreProperties.txt): besides the above, the
  Hangul fillers U+115F, U+1160, U+3164, U+FFA0, the Khmer inherent vowels U+17B4/U+17B5,
  Mongolian free variation selectors and the ranges Unicode reserves as ignorable;
- or U+2800 BRAILLE PATTERN BLANK, which is a symbol that shows nothing.
"""

from __future__ import annotations

import unicodedata

INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"})
# Default_Ignorable_Code_Point (Unicode 15.1), as inclusive ranges.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Symbols and letters that render as blank space without being ignorable.
_BLANK = frozenset({"\u2800"})


def is_invisible(char: str) -> bool:
    """Whether a character shows nothing on its own (see the module docstring)."""
    if char.isspace() or char in _BLANK or unicodedata.category(char) in INVISIBLE_CATEGORIES:
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _DEFAULT_IGNORABLE)


def has_visible_character(text: str) -> bool:
    return any(not is_invisible(char) for char in text)
