"""Obviously-correct path-string splitting: the reference of ``kernels.tokenize.split_paths``."""

from __future__ import annotations

_ASCII_SPACE = " \t\n\v\f\r"


def split_paths(rows: list[bytes], sep: bytes) -> tuple[list[list[int]], list[bytes]]:
    """Per row, its tokens' codes (split on ``sep``, stripped of ASCII white space, empty ones dropped),
    numbered in order of first appearance; and the names (bytes) of the codes."""
    names: list[bytes] = []
    index: dict[bytes, int] = {}
    out = []
    for row in rows:
        codes = []
        for token in row.split(sep):
            name = token.strip(_ASCII_SPACE.encode())
            if not name:
                continue
            if name not in index:
                index[name] = len(names)
                names.append(name)
            codes.append(index[name])
        out.append(codes)
    return out, names
