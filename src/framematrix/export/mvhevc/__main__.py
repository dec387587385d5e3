"""``python -m framematrix.export.mvhevc FILE...``: print the box trees of .mov/.mp4 files."""

from __future__ import annotations

import sys

from framematrix.export.mvhevc.mov import dump_tree

for name in sys.argv[1:]:
    print(name)
    print("\n".join("  " + line for line in dump_tree(name)))
