"""What training (train.py) and serving (endpoint.py) share: the priority labels and the text normalization.

A model only sees tokens as training saw them, so both sides normalize the same way: lower case,
words of letters and digits (an apostrophe inside a word kept), everything else a separator.
fastText reads tokens separated by whitespace and treats `__label__` tokens as labels, so neither
a newline nor an underscore survives.
"""

from __future__ import annotations

import re

# BlazingText/fastText labels of the seed's training data, and the Jira priority each stands for
PRIORITIES = {
    "__label__1": "Optional",
    "__label__2": "Trivial",
    "__label__3": "Minor",
    "__label__4": "Major",
    "__label__5": "Critical",
    "__label__6": "Blocker",
}
LABEL_OF = {name: label for label, name in PRIORITIES.items()}

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def normalize(text: str) -> str:
    """Lower-cased words joined by single spaces."""
    return " ".join(WORD.findall(text.lower()))
