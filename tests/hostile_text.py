"""A hostile model reply, shared by the tests of how reports cap and neutralise model text."""

REPLY_FILL = 1_000_000
CONTROLS = "".join(map(chr, [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]))  # C0 but tab/LF/CR, DEL
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
HOSTILE_REPLY = f"ctl[{CONTROLS}] bidi[{BIDI}] " + "x" * REPLY_FILL  # one model reply, over 1 MB
