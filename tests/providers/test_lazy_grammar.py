"""The lazy grammar (engine/providers/lazy_grammar.py) picks the tokens llama-cpp-python's own chain picks:
on synthetic logits through llama.cpp's real top-k -> min-p -> temp -> dist, and on a real study's calls."""

import ctypes
import math
import sys
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from engine import load_study
from engine.cli import main
from engine.providers.local_llama import local_provider, model_name
from engine.providers.lazy_grammar import CHUNK, TOKEN_DATA, reachable

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from grammar_replay import recorded_calls, replay  # noqa: E402

TOP_K, MIN_P, TEMP = 40, 0.05, 0.7


def pick(rows: np.ndarray, seed: int, is_sorted: bool) -> int:
    """The token llama.cpp's top-k(40) -> min-p(0.05) -> temp -> dist(seed) samples from these candidates
    (what follows the grammar in llama-cpp-python's chain; its typical and top-p at 1 are empty samplers)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    for sampler in (llama_cpp.llama_sampler_init_top_k(TOP_K), llama_cpp.llama_sampler_init_min_p(MIN_P, 1),
                    llama_cpp.llama_sampler_init_temp(TEMP), llama_cpp.llama_sampler_init_dist(seed)):
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    rows = np.ascontiguousarray(rows.copy())
    array = llama_cpp.llama_token_data_array(
        data=ctypes.cast(rows.ctypes.data, ctypes.POINTER(llama_cpp.llama_token_data)),
        size=len(rows), selected=-1, sorted=is_sorted)
    llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
    token = int(rows["id"][array.selected])
    llama_cpp.llama_sampler_free(chain)
    return token


def candidates(logits: np.ndarray) -> np.ndarray:
    rows = np.zeros(len(logits), TOKEN_DATA)
    rows["id"], rows["logit"] = np.arange(len(logits)), logits
    return rows


def stock_and_lazy(logits: np.ndarray, allowed: np.ndarray, seeds: range) -> tuple[list[int], list[int] | None, int]:
    """The tokens the stock chain picks (the grammar sets the disallowed logits to -inf) and those the
    lazy one picks from `reachable`'s candidates (None when it defers to the whole vocabulary); and how
    many candidates it asked the grammar about."""
    full = candidates(np.where(allowed, logits, -np.inf).astype(np.float32))
    asked = []

    def valid(indices: np.ndarray) -> np.ndarray:
        asked.append(len(indices))
        return allowed[indices]

    keep = reachable(logits, valid, TOP_K, MIN_P)
    stock = [pick(full, seed, is_sorted=False) for seed in seeds]
    lazy = None if keep is None else [pick(candidates(logits)[keep], seed, is_sorted=True) for seed in seeds]
    return stock, lazy, sum(asked)


def test_reachable_candidates_give_the_stock_tokens_on_random_logits():
    rng = np.random.default_rng(7)
    for case in range(60):
        n = 5000 if case % 3 else 262_144
        logits = rng.normal(0, rng.uniform(1, 4), n).astype(np.float32)
        allowed = rng.random(n) < rng.choice([0.0005, 0.01, 0.3, 1.0])
        allowed[rng.integers(n)] = True  # a grammar always allows some token
        stock, lazy, asked = stock_and_lazy(logits, allowed, range(20))
        assert lazy == stock, case  # no ties in continuous logits: never deferred, always the same token
        if n > 5000 and allowed.mean() > 0.2:
            assert asked < 2000  # top-k is filled from the first few hundred candidates


def test_min_p_boundary_is_kept_as_llama_cpp_keeps_it():
    # llama.cpp keeps a token whose logit is >= the best + logf(min_p) in float32; one a float step below goes.
    best = np.float32(2.5)
    edge = np.float32(best + np.float32(math.log(MIN_P)))
    for logit in (edge, np.nextafter(edge, np.float32(-np.inf)), np.nextafter(edge, np.float32(np.inf))):
        logits = np.array([best, 9.0, logit, -1.0, 5.0, -20.0], np.float32)  # 9.0 and 5.0 are disallowed
        allowed = np.array([True, False, True, False, False, True])
        stock, lazy, _ = stock_and_lazy(logits, allowed, range(200))
        assert lazy == stock


def test_ties_among_survivors_defer_to_the_whole_vocabulary_and_others_do_not():
    rng = np.random.default_rng(3)
    base = rng.normal(-5, 1, 1000).astype(np.float32)
    allowed = np.zeros(1000, bool)
    allowed[:50] = True
    base[:50] = np.linspace(3, 1, 50, dtype=np.float32)  # 50 valid, distinct, best 3.0

    def ask(logits):
        return reachable(logits, lambda i: allowed[i], TOP_K, MIN_P)

    assert ask(base) is not None
    tied_top = base.copy()
    tied_top[1] = tied_top[0]
    assert ask(tied_top) is None  # two survivors with equal logits: their order is partial_sort's
    tied_invalid = base.copy()
    tied_invalid[60:70] = 3.5  # equal logits among disallowed tokens do not matter
    assert ask(tied_invalid) is not None
    tied_low = base.copy()
    tied_low[45:50] = -2.0  # below min-p's cutoff (3.0 - 3.0): removed whatever their order
    assert ask(tied_low) is not None
    # At top-k's edge: min-p 0.001 keeps down to best - 6.9, so the 40th and 41st valid both survive it.
    edge = base.copy()
    edge[40] = edge[39]
    assert reachable(edge, lambda i: allowed[i], TOP_K, 0.001) is None


def test_a_tie_at_top_ks_edge_is_seen_wherever_the_checking_stops():
    # The 40th valid candidate is the m-th highest logit and the 41st, next in line, has the same logit:
    # which of the two top-k keeps is partial_sort's choice, whether or not they are checked together.
    for m in range(CHUNK - 3, CHUNK + 4):
        logits = np.concatenate([10 - 0.01 * np.arange(200), np.full(800, -10.0)]).astype(np.float32)
        allowed = np.zeros(1000, bool)
        allowed[m - 40:m + 1] = True
        logits[m] = logits[m - 1]
        assert reachable(logits, lambda i: allowed[i], TOP_K, 0.001) is None, m
        logits[m] = np.nextafter(logits[m - 1], np.float32(-np.inf))
        assert reachable(logits, lambda i: allowed[i], TOP_K, 0.001) is not None, m


def test_a_token_allowed_only_far_down_is_found_in_a_few_grammar_calls():
    # A string at its maxLength: only a closing quote is allowed, tens of thousands of candidates below
    # the best. Every candidate above the quote's min-p cutoff must be checked; in chunks that grow
    # (at 64 a chunk: 419 and 2822 calls into the grammar here; now 14 and 20), read from llama.cpp's 12-byte records as the
    # provider reads them, and still the stock chain's tokens.
    rng = np.random.default_rng(11)
    n = 262_144
    for far_down in (3_000, 80_000):
        rows = candidates(rng.normal(0, 3, n).astype(np.float32))
        order = np.argsort(-rows["logit"])
        allowed = np.zeros(n, bool)
        allowed[order[far_down:far_down + 5]] = True
        calls = []

        def valid(indices: np.ndarray) -> np.ndarray:
            calls.append(len(indices))
            return allowed[indices]

        keep = reachable(rows["logit"], valid, TOP_K, MIN_P)  # a strided view, as in the provider
        stock, lazy, _ = stock_and_lazy(rows["logit"].copy(), allowed, range(20))
        assert keep is not None and lazy == stock
        assert sum(calls) >= far_down  # everything above the quote was checked
        assert len(calls) <= 40, (far_down, len(calls))


@pytest.mark.slow
def test_a_real_studys_replies_are_those_of_the_stock_chain(tmp_path):
    db = tmp_path / "lazy.duckdb"
    before = {name: (stats.lazy_tokens, len(stats.errors)) for name, stats in local_provider().grammar_stats().items()}
    code = main(["run", "model_size", "design.factors.agent=[smollm2_135m]", "design.factors.persona=[default]",
                 "design.controls=[{agent: [scripted:null]}]", "design.seeds=1", "scenario.max_turns=3",
                 f"store.path={db}", "--no-progress", "--no-report"])
    assert code == 0
    model = load_study("model_size").spec.models["smollm2_135m"]
    calls = recorded_calls(db, "smollm2_135m", model)
    assert len(calls) >= 6
    bodies = [body for body, _ in calls]
    # The run's own replies were sampled by the lazy grammar (its counts say so), the replay by the stock chain.
    name = model_name(model.litellm_id)
    lazy, (tokens_before, errors_before) = local_provider().grammar_stats()[name], before.get(name, (0, 0))
    assert lazy.lazy_tokens > tokens_before and len(lazy.errors) == errors_before
    # One thread: llama.cpp's logits do not depend on it, and two spin on a busy machine.
    stock = replay(model, bodies, lazy=False, threads=1)
    assert stock.texts == [text for _, text in calls] and stock.lazy_tokens == 0
