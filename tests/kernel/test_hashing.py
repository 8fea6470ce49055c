"""content_hashes (the plan's fast path) hashes exactly the bytes content_hash would."""

import hashlib
import math

import pytest

from engine.kernel.hashing import canonical_json, content_hash, content_hashes

VARIED_INPUTS = [
    {},
    {"item": {}},
    {"model_key": "gemma3_270m", "generation": {"temperature": 0.7, "top_p": 1.0, "max_tokens": 96}},
    {"text": "naïve café — 日本語 🙂 \"quoted\" \\ back\nslash\ttab \u2028 \x00", "ünïcode_kéy": "ß"},
    {"floats": [0.1, 1e-300, 1e300, -0.0, 2.5, 1 / 3, 123456789.123456789, float("inf"), -math.inf, math.nan],
     "ints": [0, -1, 2**70], "bools": [True, False], "none": None},
    {"nested": {"b": [1, {"z": 1, "a": [None, {"y": "x"}]}], "a": {"c": 1.5}}, "A": 1, "_": 2, "~": 3},
    {"sides": {"B": {"kind": "scripted", "policy": "hawk"}, "A": {"kind": "llm", "persona_text": "Be\u00a0calm."}}},
    {"tuple": (1, 2), "set_like": "x", "object": object.__name__},
]


@pytest.mark.parametrize("inputs", VARIED_INPUTS)
@pytest.mark.parametrize("scenario, version", [("escalation", "1"), ("jailbreak", "1"), ("ünï", "2.0")])
def test_trial_ids_equal_the_straightforward_content_hash(inputs, scenario, version):
    seeds = [0, 1, 7, 10, 12345, 2**31 - 1]
    fixed = {"scenario": scenario, "version": version, "inputs": inputs}
    want = [content_hash({"scenario": scenario, "version": version, "inputs": inputs, "seed": s}) for s in seeds]
    assert content_hashes(fixed, "seed", seeds) == want


@pytest.mark.parametrize("value", [0, 3, -2, True, False, None, 1.5, "7", "ü", [1, "a"], {"k": 0.25}])
@pytest.mark.parametrize("key", ["seed", "0", "a", "zzz", "ä", "inputs"])
def test_any_key_in_any_sorted_position_and_any_value(key, value):
    fixed = {"scenario": "s", "version": "1", "m": {"x": [1.0, "é"]}}
    if key in fixed:
        return
    assert content_hashes(fixed, key, [value]) == [content_hash({**fixed, key: value})]
    for length in (12, 16, 64):
        assert content_hashes(fixed, key, [value], length) == [content_hash({**fixed, key: value}, length)]


def test_bytes_hashed_are_the_canonical_json():
    fixed = {"scenario": "jailbreak", "version": "1", "inputs": {"item": {"text": "héllo"}, "t": 0.1}}
    full = canonical_json({**fixed, "seed": 3}).encode()
    assert content_hashes(fixed, "seed", [3], 64) == [hashlib.sha256(full).hexdigest()]


def test_keys_json_would_coerce_fall_back_to_the_plain_way():
    for fixed in ({1: "a"}, {1: "a", "b": 2}):  # json.dumps cannot sort an int key among str keys
        with pytest.raises(TypeError):
            content_hash({**fixed, "seed": 0})
        with pytest.raises(TypeError):
            content_hashes(fixed, "seed", [0])
    assert content_hashes({}, "seed", [5]) == [content_hash({"seed": 5})]
    assert content_hashes({"seed": 1}, "seed", [2]) == [content_hash({"seed": 2})]
