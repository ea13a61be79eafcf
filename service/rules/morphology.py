"""Russian morphology: pymorphy3's analyzer of the OpenCorpora dictionary, one per process.

A phrase's words (`service.rules.words`) and a town's cases (`service.rules.places`) read
the same dictionary, and every `MorphAnalyzer` loads a copy of its own (18 MiB in a worker).
"""

from __future__ import annotations

import pymorphy3

# Loading the dictionaries takes under a tenth of a second: on import, not under a lock.
ANALYZER = pymorphy3.MorphAnalyzer(lang="ru")
