"""A JSON-schema grammar that checks only the candidates sampling could still pick: same tokens, less work.

llama-cpp-python 0.3.36 samples a grammar-constrained reply with the chain
penalties -> grammar -> top-k -> typical -> top-p -> min-p -> temp -> dist. The grammar sampler checks
every candidate of the vocabulary (262k for Gemma 3: ~120 ms a token), yet top-k(40) and min-p keep
only a handful of them. `LazyGrammarLlama` puts `LazyGrammar` in the grammar's place: it checks the
candidates in descending logit order, a band at a time, until no unchecked one can matter, and hands on
just the valid ones that can, sorted as top-k would sort them. Why the rest of the chain then picks the
same token (llama.cpp's src/llama-sampler.cpp, vendored with that version):
- grammar validity is per candidate (llama_grammar_apply_impl rejects each token against the grammar's
  stacks alone), so checking a subset gives the same verdicts;
- top-k keeps the k highest-logit valid tokens sorted descending; min-p (sorted input) keeps the prefix
  with logit >= first + logf(p), before temp; temp and dist see only what min-p kept;
- penalties (repeat 1, frequency 0, presence 0), typical (p >= 1) and top-p (p >= 1) are built as empty
  samplers (named "?penalties", "?typical", "?top-p") that do nothing;
- so once every unchecked logit is below the k-th valid one, or below the best valid one + ln(min_p),
  the survivors of min-p are fixed, and so is their order, unless two of them have equal logits: then
  the order depends on how std::partial_sort met them and the whole vocabulary is checked, as before.
Only a chain of exactly these samplers (STOCK_CHAIN) is changed; any other stays as it is.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import llama_cpp
from llama_cpp import Llama

# llama_token_data {int32 id; float logit; float p;}
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
assert ctypes.sizeof(llama_cpp.llama_token_data) == TOKEN_DATA.itemsize
# llama-cpp-python's chain for a grammar, temp > 0, top_k > 0, min_p > 0, top_p = typical_p = 1, no
# penalties, no mirostat and no logits processor, by the names llama_sampler_name gives ("?": empty).
STOCK_CHAIN = (b"?penalties", b"grammar", b"top-k", b"?typical", b"?top-p", b"min-p", b"temp", b"dist")
# Bands below the highest logit checked in turn (the last one takes the rest), and the first chunk checked
# at once: a few dozen candidates suffice for most tokens. Once GROW_AFTER candidates are checked, each
# chunk is as large as all checked before it (up to MAX_CHUNK): a token the grammar allows only far down
# the list (a string at its maxLength, which only a quote may end) checks ~80k of Gemma's candidates,
# which took ~1000 chunks of Python at 64 a chunk, and narrow bands keep each sort short.
# Checking more than the rule needs changes nothing: every extra valid one lies below what can survive.
BANDS = (*range(2, 34, 2), 40.0, 48.0, 64.0, math.inf)
CHUNK = 64
GROW_AFTER = 4 * CHUNK
MAX_CHUNK = 1 << 15
# min-p's threshold is float32 arithmetic in llama.cpp; keeping a margin below it only checks more.
MARGIN = 1e-3


def reachable(logits: np.ndarray, valid: Callable[[np.ndarray], np.ndarray], top_k: int,
              min_p: float) -> np.ndarray | None:
    """The indices of the grammar-valid candidates that top-k then min-p could keep, in the order top-k
    leaves them (descending logit); None when equal logits among them make that order depend on the
    sort (the caller then checks the whole vocabulary). `valid(indices)` says which candidates the
    grammar allows; it is asked about the highest logits first, and about little more than the rule needs
    (the last chunk's rest)."""
    # The candidates' logits are a field of llama.cpp's 12-byte records: one strided read into a contiguous
    # copy, then each band is one comparison over that copy (three over the records took ~3 ms a token).
    logits = np.ascontiguousarray(logits)
    top = float(logits.max())
    if not math.isfinite(top):  # NaN or +inf: the stock chain's business
        return None
    found: list[np.ndarray] = []
    kept = np.empty(0, np.float32)  # logits of the valid candidates found, descending
    upper = np.float32(np.inf)
    size, checked = CHUNK, 0

    def done(ceiling: float, reached: bool) -> bool:
        """Whether every unchecked logit lies below what could survive, knowing that each is below
        `ceiling` (`reached`: or equal to it)."""
        if not len(kept):
            return False
        cutoffs = [float(kept[0]) + math.log(min_p) - MARGIN]
        if len(kept) >= top_k:
            cutoffs.append(float(kept[top_k - 1]))
        bound = max(cutoffs)
        return ceiling < bound if reached else ceiling <= bound

    for width in BANDS:
        lower = np.float32(top - width) if math.isfinite(width) else np.float32(-np.inf)
        if math.isfinite(width):  # those at or above `lower` are usually few: drop the earlier bands'
            band = np.flatnonzero(logits >= lower)
            band = band[logits[band] < upper]
        else:
            band = np.flatnonzero(logits < upper)
        band = band[np.argsort(-logits[band], kind="stable")]
        start = 0
        while start < len(band):
            if done(float(logits[band[start]]), reached=True):
                return _survivors(np.concatenate(found), logits, top_k, min_p)
            checked += min(size, len(band) - start)
            chunk = band[start:start + size]
            start += size
            size = CHUNK if checked < GROW_AFTER else min(checked, MAX_CHUNK)
            chunk = chunk[valid(chunk)]
            if len(chunk):
                found.append(chunk)
                kept = np.concatenate([kept, logits[chunk]])
        upper = lower
        if not math.isfinite(width) or done(float(lower), reached=False):
            break
    if not found:
        return None
    return _survivors(np.concatenate(found), logits, top_k, min_p)


def _survivors(found: np.ndarray, logits: np.ndarray, top_k: int, min_p: float) -> np.ndarray | None:
    """Of the valid candidates found (descending logit), those top-k and min-p could keep; None on a tie
    that makes their order (or top-k's choice at its edge) depend on the sort."""
    values = logits[found]
    keep = found[values >= float(values[0]) + math.log(min_p) - MARGIN]
    values = logits[keep]
    if len(keep) > top_k:
        if values[top_k] == values[top_k - 1]:
            return None
        keep, values = keep[:top_k], values[:top_k]
    if np.any(values[1:] == values[:-1]):
        return None
    return keep


@dataclass
class LazyStats:
    """One model's grammar-constrained tokens: sampled from the candidates found, or after checking the
    whole vocabulary (a tie; or an error, kept here: it cannot cross into C)."""

    lazy_tokens: int = 0
    full_tokens: int = 0
    errors: list[str] = field(default_factory=list)


class LazyGrammar:
    """A llama.cpp sampler (its interface built with ctypes) that owns the chain's grammar sampler:
    it applies the grammar to the candidates `reachable` asks about and forwards accept and reset, so
    the grammar advances with every sampled token as before."""

    def __init__(self, grammar: Any, top_k: int, min_p: float, stats: LazyStats) -> None:
        self.grammar = grammar
        self.top_k = top_k
        self.min_p = min_p
        self.stats = stats
        self._callbacks = (llama_cpp.llama_sampler_i_apply(self._apply),
                           llama_cpp.llama_sampler_i_accept(lambda _smpl, token: llama_cpp.llama_sampler_accept(
                               self.grammar, token)),
                           llama_cpp.llama_sampler_i_reset(lambda _smpl: llama_cpp.llama_sampler_reset(self.grammar)))
        iface = llama_cpp.llama_sampler_i()
        iface.apply, iface.accept, iface.reset = self._callbacks
        self._iface = iface  # name, clone and free stay NULL: the chain must never free or clone this sampler
        self.sampler = llama_cpp.llama_sampler(iface=ctypes.pointer(iface), ctx=None)

    def pointer(self) -> Any:
        return ctypes.pointer(self.sampler)

    def _apply(self, _smpl: Any, cur_p: Any) -> None:
        # An exception cannot cross into C (ctypes would print and ignore it): on any, the whole
        # vocabulary is checked, as the stock chain does.
        try:
            if self._apply_lazily(cur_p.contents):
                self.stats.lazy_tokens += 1
                return
        except Exception as error:  # noqa: BLE001 - kept in the stats, then the stock path
            self.stats.errors.append(repr(error))
        self.stats.full_tokens += 1
        llama_cpp.llama_sampler_apply(self.grammar, cur_p)

    def _apply_lazily(self, candidates: Any) -> bool:
        if candidates.sorted or candidates.size == 0:
            return False  # the stock chain gives the grammar every token unsorted; anything else is new
        address = ctypes.cast(candidates.data, ctypes.c_void_p).value
        buffer = (ctypes.c_char * (candidates.size * TOKEN_DATA.itemsize)).from_address(address)
        data = np.frombuffer(buffer, dtype=TOKEN_DATA)
        keep = reachable(data["logit"], lambda indices: self._valid(data[indices]), self.top_k, self.min_p)
        if keep is None:
            return False
        data[:len(keep)] = data[keep]  # a copy first (fancy indexing), then written in place
        candidates.size = len(keep)
        candidates.sorted = True
        return True

    def _valid(self, rows: np.ndarray) -> np.ndarray:
        """Which of these candidates (a copy) the grammar allows: it sets the others' logits to -inf."""
        rows = np.ascontiguousarray(rows)
        array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(rows.ctypes.data, ctypes.POINTER(llama_cpp.llama_token_data)),
            size=len(rows), selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return rows["logit"] != -np.inf


def install(sampler: Any, top_k: int, min_p: float, stats: LazyStats) -> LazyGrammar | None:
    """Put a `LazyGrammar` in the place of the grammar in llama-cpp-python's chain (`LlamaSampler`);
    None, and the chain unchanged, unless it is exactly STOCK_CHAIN."""
    chain = sampler.sampler
    names = tuple(llama_cpp.llama_sampler_name(llama_cpp.llama_sampler_chain_get(chain, i))
                  for i in range(llama_cpp.llama_sampler_chain_n(chain)))
    if names != STOCK_CHAIN or sampler.custom_samplers:
        return None
    at = names.index(b"grammar")
    # The C API only appends: take the grammar and everything after it out, then put them back after ours.
    rest = [llama_cpp.llama_sampler_chain_remove(chain, at) for _ in range(at, len(names))]
    lazy = LazyGrammar(rest[0], top_k, min_p, stats)
    llama_cpp.llama_sampler_chain_add(chain, lazy.pointer())
    for other in rest[1:]:
        llama_cpp.llama_sampler_chain_add(chain, other)
    # llama-cpp-python takes its custom samplers out before it frees the chain; the grammar is ours to free.
    sampler.custom_samplers.append((at, lazy))
    sampler._exit_stack.callback(llama_cpp.llama_sampler_free, lazy.grammar)
    return lazy


class LazyGrammarLlama(Llama):
    """llama_cpp.Llama whose grammar-constrained sampling checks only the candidates that can matter;
    `lazy_stats` counts its tokens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lazy_stats = LazyStats()
        super().__init__(*args, **kwargs)

    def _init_sampler(self, **kwargs: Any) -> Any:  # type: ignore[override]  # generate() passes keywords
        sampler = super()._init_sampler(**kwargs)
        if kwargs.get("grammar") is not None:
            install(sampler, kwargs.get("top_k", 40), kwargs.get("min_p", 0.05), self.lazy_stats)
        return sampler
