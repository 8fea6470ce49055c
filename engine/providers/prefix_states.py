"""Prompt prefixes reused from saved KV states without changing a reply: a reply depends on its request alone.

llama.cpp's logits for a prompt depend on how the prompt was split into batches: its CPU kernels
(here AVX2, Q4_K weights repacked) multiply a batch's rows four at a time and the last one to three
rows one at a time, by other instructions, so a token gets other floats (up to 0.75 in a Gemma 3 logit)
when it falls in a batch's remainder rather than in a group of four. llama-cpp-python decodes whatever
follows the prefix a prompt shares with the call before as one batch, from wherever that prefix ends: a
reply depended on which call came before, so a run resumed after a kill, or a call sent to another
process, could draw other tokens.

`PrefixStates` starts every batch at a position that is a multiple of ALIGN, and reuses a cached prefix
only up to such a position and only as far as the cache decoded it in whole groups (never the last
tokens of an earlier prompt, nor its reply, decoded a token at a time). Every row then falls in the
group of four, or the remainder, it falls in when the whole prompt is decoded as one batch, and is
computed from the same earlier entries: the same floats. Measured on both shipped models (flash
attention off, as Llama() sets it): logits bit-identical between a prompt decoded whole, after another
prompt's aligned prefix, after a restored state, and at one or two threads
(tests/providers/test_prefix_states.py checks the replies). ALIGN is 8, not 4, so that kernels grouping
rows by eight keep the property too.

After decoding a prompt's aligned part it keeps its KV state (llama_state_seq_get_data: 6-7 MiB for
336-400 Gemma tokens, a few ms), the last KEPT of them (one a prefix of a newer one is dropped); the next call
starts from whichever kept state or the live cache shares the longest aligned prefix with its prompt.
A game's consecutive calls alternate between players, so the best prefix is often two calls back, and
a game's first prompts are those of the games before.
"""

from __future__ import annotations

import ctypes
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import llama_cpp
from llama_cpp import Llama

ALIGN = 8  # every batch starts at a multiple of it; a prefix is reused up to one
KEPT = 32  # saved prefix states per model (6-9 MiB each for the shipped models' prompts)


@dataclass(frozen=True)
class SavedPrefix:
    tokens: tuple[int, ...]  # a multiple of ALIGN tokens, decoded in batches starting at multiples of ALIGN
    state: Any  # ctypes buffer from llama_state_seq_get_data


@dataclass
class PrefixStats:
    """Where each call's reused prefix came from."""

    from_live: int = 0
    from_saved: int = 0
    fresh: int = 0
    states_saved: int = 0
    tokens_reused: int = 0  # prompt tokens taken from the cache or a saved state


def aligned(n: int) -> int:
    return n - n % ALIGN


class PrefixStates:
    """Mixin for llama_cpp.Llama (before it in the bases): aligned prompt batches, reuse from saved states."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Llama.eval splits its tokens into batches of n_batch from the cache's end: keep those aligned.
        assert self.n_batch % ALIGN == 0, self.n_batch
        self.saved: deque[SavedPrefix] = deque(maxlen=KEPT)
        self.prefix_stats = PrefixStats()
        self._live_aligned = 0  # leading tokens of the live cache decoded in whole aligned groups
        self._prompt_next = False  # the next eval() is a prompt's

    def forget_states(self) -> None:
        self.saved.clear()
        self._live_aligned = 0
        self.reset()

    def generate(self, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
        tokens = list(tokens)
        if kwargs.get("reset", True):
            self._start_from_best_prefix(tokens)
        self._prompt_next = True
        return (yield from super().generate(tokens, *args, **kwargs))  # type: ignore[misc]

    def _start_from_best_prefix(self, tokens: list[int]) -> None:
        """Leave the cache holding the longest aligned prefix of `tokens` on offer (at least one prompt
        token is always decoded: Llama.generate would otherwise re-decode the last one alone)."""
        limit = aligned(len(tokens) - 1)
        live_ids = self.input_ids[: min(self.n_tokens, self._live_aligned)]
        best_live = min(aligned(Llama.longest_token_prefix(live_ids, tokens)), limit)
        best_saved, source = 0, None
        for saved in self.saved:
            n = min(aligned(Llama.longest_token_prefix(saved.tokens, tokens)), limit)
            if n > best_saved:
                best_saved, source = n, saved
        if best_live >= best_saved and best_live > 0 and self._ctx.kv_cache_seq_rm(-1, best_live, -1):
            self.n_tokens = best_live
            self.prefix_stats.from_live += 1
            self.prefix_stats.tokens_reused += best_live
            return
        self.reset()
        self._live_aligned = 0
        self._ctx.kv_cache_clear()
        if source is not None and self._restore(source, best_saved):
            self.prefix_stats.from_saved += 1
            self.prefix_stats.tokens_reused += best_saved
            return
        self.prefix_stats.fresh += 1

    def _restore(self, saved: SavedPrefix, keep: int) -> bool:
        ctx = self._ctx.ctx
        if llama_cpp.llama_state_seq_set_data(ctx, saved.state, len(saved.state), 0) == 0:
            self._ctx.kv_cache_clear()
            return False
        if keep < len(saved.tokens) and not self._ctx.kv_cache_seq_rm(-1, keep, -1):
            self._ctx.kv_cache_clear()
            return False
        self.input_ids[:keep] = saved.tokens[:keep]
        self.n_tokens = keep
        return True

    def eval(self, tokens: Sequence[int]) -> None:
        if not self._prompt_next:
            super().eval(tokens)  # a generated token
            return
        self._prompt_next = False
        start = self.n_tokens  # a multiple of ALIGN (see _start_from_best_prefix)
        self._live_aligned = start  # until the aligned part is decoded (a failed decode leaves no more)
        whole = aligned(start + len(tokens))
        if whole > start:
            super().eval(tokens[: whole - start])
            self._save(whole)
            tokens = tokens[whole - start:]
        self._live_aligned = whole
        if tokens:
            super().eval(tokens)

    def _save(self, length: int) -> None:
        ctx = self._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(ctx, state, size, 0) == 0:
            return
        tokens = tuple(int(t) for t in self.input_ids[:length])
        # A kept state whose tokens begin the new one's can serve no prompt better: replace it.
        for old in [old for old in self.saved if tokens[: len(old.tokens)] == old.tokens]:
            self.saved.remove(old)
        self.saved.append(SavedPrefix(tokens, state))
        self.prefix_stats.states_saved += 1
