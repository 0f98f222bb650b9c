"""Process-wide CLI flags set by the root callback."""

debug = False
