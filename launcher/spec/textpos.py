"""Line and column as an editor shows them, from a character's index in the text.

PyYAML counts lines its own way: NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR
(U+2029) end a line for it, even inside a comment or a quoted string, where editors (VS Code,
vim, GitHub) see none. Counting from the index keeps every position where the editor puts it.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from launcher.errors import Location

_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


class TextPositions:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.starts = [0, *(match.end() for match in _LINE_END.finditer(text))]
        self.bom = text.startswith(_BOM)  # no column of its own in an editor

    def at(self, index: int) -> Location:
        """The 1-based line and column (in characters) of text[index]."""
        line = bisect_right(self.starts, index) - 1
        col = index - self.starts[line] + 1
        if line == 0 and self.bom and index > 0:
            col -= 1
        return Location(self.source, line + 1, col)
