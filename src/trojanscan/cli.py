"""Command-line interface (thin: parse → call the API → print/write).

Exit codes: 0 scanned and benign; 1 scanned and trojaned; 2 bad input or usage (one-line reason on
stderr, no partial output files).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trojanscan.errors import InvalidInputError, TrojanScanError

if TYPE_CHECKING:
    from trojanscan.data.base import Dataset
    from trojanscan.models.classifier import Classifier
    from trojanscan.recipes import TrainRecipe

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Detect neural trojans (backdoors) in pre-trained image classifiers.")

EXIT_BENIGN, EXIT_TROJANED, EXIT_BAD_INPUT = 0, 1, 2


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise InvalidInputError(f"--{name} must be comma-separated numbers; got {text!r}") from exc


def _ints(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise InvalidInputError(f"--{name} must be comma-separated integers like 3,32,32; got {text!r}") from exc


def _check_out(path: Path, suffixes: tuple[str, ...], flag: str) -> None:
    if path.suffix not in suffixes:
        raise InvalidInputError(f"{flag} {str(path)!r} must end in {' or '.join(suffixes)}")
    if path.exists() and path.is_dir():
        raise InvalidInputError(f"{flag} {str(path)!r} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise InvalidInputError(f"{flag} {str(path)!r}: {str(parent)!r} is not a directory")


@app.command()
def scan(
    model: Annotated[Path, typer.Argument(
        help="Model file: .safetensors (+ .json sidecar), TorchScript .pt, or ONNX .onnx (query-only)")],
    data: Annotated[str, typer.Option(
        help="Clean data: a .npz file (x, y), a dataset folder (MNIST IDX, GTSRB, CIFAR-10: its test split), "
             "an image folder/zip (folder images are fitted to the model's input shape), or 'none' (data-free)")
    ] = "none",
    method: Annotated[str, typer.Option(help="deep_inspect | neuron_inspect | neural_cleanse | all")] = "all",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same report)")] = 0,
    alpha: Annotated[float | None, typer.Option(help="Significance level (sets the cutoff)")] = None,
    cutoff: Annotated[float | None, typer.Option(help="Anomaly-index cutoff (default 2)")] = None,
    familywise: Annotated[bool, typer.Option(
        help="Raise the cutoff to the one whose false-alarm rate is alpha per model (K labels), not per label")] = False,
    input_shape: Annotated[str | None, typer.Option(help="C,H,W (TorchScript without metadata)")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Number of classes (default: metadata or probe)")] = None,
    mean: Annotated[str | None, typer.Option(help="Per-channel mean, e.g. 0.49,0.48,0.45")] = None,
    std: Annotated[str | None, typer.Option(help="Per-channel std")] = None,
    outputs: Annotated[str, typer.Option(
        help="What the model returns: auto (probe), logits, probabilities (ends in softmax) or log_probabilities")] = "auto",
    allow_unsafe_pickle: Annotated[bool, typer.Option(help="Load Python pickles (runs code from the file!)")] = False,
    allow_unsafe_torchscript: Annotated[bool, typer.Option(
        help="Run a TorchScript file even if its code can touch files or the network (trusted files only!)")] = False,
    device: Annotated[str, typer.Option(
        help="Where the network runs: cpu, cuda, cuda:N, mps or auto (CUDA if there is one)")] = "cpu",
    query_only: Annotated[bool, typer.Option(
        help="Use only the model's scores (as a prediction endpoint gives): input gradients are estimated from "
             "queries; NeuronInspect is skipped. Always so for an ONNX file")] = False,
    query_samples: Annotated[int, typer.Option(
        help="Query-only: direction pairs per gradient estimate (each costs 2 queries per image)")] = 20,
    query_sigma: Annotated[float, typer.Option(help="Query-only: smoothing radius of the estimate, in pixel units")] = 0.01,
    max_queries: Annotated[int | None, typer.Option(
        help="Query-only: stop with exit 2 (nothing written) before the model gets more than this many images")] = None,
    pairs: Annotated[bool, typer.Option(
        help="DeepInspect: test every source-target class pair, which finds all-to-all trojans (y -> y+1); one "
             "trigger generator per class, several times slower")] = False,
    scale: Annotated[str, typer.Option(
        help="raw (the papers) or log: Neural Cleanse and DeepInspect test the log of their trigger norms, so a "
             "label counts as small relative to the others (not in the papers; no calibrated probability)")] = "raw",
    autoencoder: Annotated[str, typer.Option(
        help="DeepInspect: let the trigger generator work in an auto-encoder's latent space (paper 4.2): auto (above "
             "3x64x64 input values), on or off")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Scan MODEL for a trojan: prints a summary, writes JSON/HTML reports, exit 0 benign / 1 trojaned / 2 bad input."""
    from trojanscan.detectors import list_detectors
    from trojanscan.models import load_model
    from trojanscan.scan import scan_model

    if method != "all" and method not in list_detectors():
        raise InvalidInputError(f"--method {method!r} is unknown; choose one of {', '.join(list_detectors())} or all")
    if alpha is not None and cutoff is not None:
        raise InvalidInputError("give --alpha or --cutoff, not both")
    if pairs and method not in ("deep_inspect", "all"):
        raise InvalidInputError(f"--pairs is a DeepInspect mode; it does not apply to --method {method}")
    from trojanscan.scan import scale_params

    params = scale_params(scale, method, pairs)
    if pairs:
        params.setdefault("deep_inspect", {})["pairs"] = True
    use_ae = _autoencoder_choice(autoencoder, method)
    if use_ae is not None:
        params.setdefault("deep_inspect", {})["use_autoencoder"] = use_ae
    if json_out is not None:
        _check_out(json_out, (".json",), "--json")
    if html_out is not None:
        _check_out(html_out, (".html", ".htm"), "--html")
    if alpha is not None:
        from trojanscan.stats import cutoff_from_alpha

        cutoff_from_alpha(alpha)
    clean, pending = _read_clean(data)  # read first: its image shape is the input shape of a model file that lacks one
    clf = load_model(model, allow_unsafe_pickle=allow_unsafe_pickle, allow_unsafe_torchscript=allow_unsafe_torchscript,
                     input_shape=_ints(input_shape, "input-shape"), num_classes=num_classes, mean=_floats(mean, "mean"),
                     std=_floats(std, "std"), device=device, outputs=outputs,
                     shape_candidates=None if clean is None else [clean.input_shape],
                     query_only=query_only, query_samples=query_samples, query_sigma=query_sigma,
                     max_queries=max_queries)
    clean, data_notes = _fit_clean(clean, pending, data, clf)
    artifact_dir = None
    if json_out is not None or html_out is not None:
        base = json_out if json_out is not None else html_out
        assert base is not None
        artifact_dir = base.parent / f"{base.stem}_files"
    fresh_dir = artifact_dir is not None and not artifact_dir.exists()
    try:
        outcome = scan_model(clf, clean, method=method, seed=seed, cutoff=cutoff, alpha=alpha, familywise=familywise,
                             progress=progress, artifact_dir=artifact_dir,
                             params=params or None)
    except BaseException:  # a scan stopped part-way (a query budget, a detector's error): no partial output files
        if fresh_dir and artifact_dir is not None and artifact_dir.exists():
            import shutil

            shutil.rmtree(artifact_dir, ignore_errors=True)
        raise
    rep = outcome.report
    if data_notes:
        rep = replace(rep, notes=rep.notes + data_notes)
    _print_summary(rep)
    if json_out is not None:
        rep.save_json(json_out)
        typer.echo(f"JSON report: {json_out}", err=True)
    if html_out is not None:
        from trojanscan.report.html import write_html

        examples = clean.x[:8] if clean is not None else None
        arts = _merge_artifacts(outcome.artifacts, rep.method)
        write_html(html_out, rep, arts, examples)
        typer.echo(f"HTML report: {html_out}", err=True)
    raise typer.Exit(EXIT_TROJANED if rep.trojaned else EXIT_BENIGN)


def _read_clean(data: str) -> tuple[Dataset | None, bool]:
    """``--data`` read as given (None for 'none'); True as well when it is a folder of images of several sizes, to be
    read again at the model's size once the model is loaded (:func:`_fit_clean`)."""
    if data.lower() == "none":
        return None, False
    from trojanscan.data.registry import read_clean_data

    clean = read_clean_data(data)
    return clean, clean is None


def _fit_clean(clean: Dataset | None, pending: bool, data: str, clf: Classifier) -> tuple[Dataset | None, list[str]]:
    """Images from a folder brought to the model's input shape, and the report note that says so
    (:func:`trojanscan.data.registry.fit_clean_data`)."""
    if clean is None and not pending:
        return None, []
    from trojanscan.data.registry import fit_clean_data

    return fit_clean_data(data, clf.input_shape, clean)


def _merge_artifacts(per_method: dict[str, Any], method: str) -> dict[str, Any]:
    if method != "all":
        return dict(per_method.get(method, {}))
    merged: dict[str, Any] = {}
    for name, arts in per_method.items():
        for k, v in arts.items():
            merged[f"{name}/{k}"] = v
            merged.setdefault(k, v)
    return merged


def _autoencoder_choice(choice: str, method: str) -> bool | None:
    """``--autoencoder`` as DeepInspect's ``use_autoencoder``: None (auto), True (on) or False (off)."""
    choices = {"auto": None, "on": True, "off": False}
    if choice not in choices:
        raise InvalidInputError(f"--autoencoder {choice!r} is unknown; choose auto, on or off")
    if choice != "auto" and method not in ("deep_inspect", "all"):
        raise InvalidInputError(f"--autoencoder is a DeepInspect setting; it does not apply to --method {method}")
    return choices[choice]


def _on_images(n: int | None) -> str:
    """Where the summary's model accuracy was measured: on how many labelled images, where the report says."""
    return " on the labelled clean data" if n is None else f" on {n:,} labelled clean images"


def _print_summary(rep: Any) -> None:
    verdict = rep.verdict.upper()
    colour = "red" if rep.trojaned else "green"
    typer.secho(f"{verdict}  ({rep.method})", fg=colour, bold=True)
    names = {c.label: c.name for c in rep.classes}
    sus = ", ".join(f"{s} ({names.get(s)})" if names.get(s) not in (None, str(s)) else str(s) for s in rep.suspects)
    typer.echo(f"  suspects:       {sus or 'none'}")
    from trojanscan.stats import PER_MODEL_TESTS

    per_model_test = rep.config.get("test") in PER_MODEL_TESTS
    if per_model_test and rep.suspects:  # DeepInspect's pair mode: which source goes where
        pairs = ", ".join(f"{int(rep.classes[t].extra['pair_source'])} -> {t}" for t in rep.suspects)
        typer.echo(f"  pairs:          {pairs}  (source -> target, most anomalous first)")
    per_model = ", per model" if per_model_test else ""
    typer.echo(f"  anomaly index:  {rep.anomaly_index:.2f}  (cutoff {rep.cutoff:.2f}"
               f"{', family-wise' if rep.familywise else ''}{per_model})")
    if rep.trojan_probability is not None:
        pooled = [k for k, r in rep.reports.items() if r.trojan_probability is not None]
        only = f"; {', '.join(pooled)} only" if len(pooled) < len(rep.reports) else ""
        typer.echo(f"  p(trojaned):    {rep.trojan_probability:.2f}  (calibrated on our benchmark models{only})")
    acc = ("" if rep.data.model_accuracy is None
           else f"; model accuracy {100 * rep.data.model_accuracy:.1f} %{_on_images(rep.data.model_accuracy_images)}")
    typer.echo(f"  data:           {rep.data.source} ({rep.data.n_images} images{acc})")
    typer.echo(f"  time:           {rep.runtime_s:.1f} s, {rep.model_queries} model queries")
    for name, sub in rep.reports.items():
        s = ",".join(map(str, sub.suspects)) or "-"
        p = "" if sub.trojan_probability is None else f"  p {sub.trojan_probability:.2f}"
        typer.echo(f"    {name:15s} {sub.verdict:9s} index {sub.anomaly_index:6.2f}{p}  suspects {s}  ({sub.runtime_s:.1f} s)")
        for note in sub.notes:  # each detector's own notes under its line (those all share: once, below)
            if note not in rep.notes:
                typer.echo(f"      note: {note}")
    for note in rep.notes:
        typer.echo(f"  note: {note}")


@app.command("train")
def train_cmd(
    dataset: Annotated[str, typer.Option(help="mnist | gtsrb | cifar10 | synthetic")],
    out: Annotated[Path, typer.Option(help="Output model path (.safetensors); writes <stem>.json and <stem>.truth.json")],
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the dataset files (not needed for synthetic)")] = None,
    attack: Annotated[str, typer.Option(help="none | badnets | blend | watermark | trojannn")] = "none",
    target: Annotated[str, typer.Option(help="Target label, 'a,b,c' (all-to-several) or 'all' (all-to-all)")] = "0",
    trigger_size: Annotated[int, typer.Option(help="Patch side in pixels (badnets, trojannn)")] = 4,
    position: Annotated[str, typer.Option(help="bottom-right|bottom-left|top-left|top-right|center|ROW,COL")] = "bottom-right",
    positions: Annotated[list[str] | None, typer.Option("--positions", help="Stamp the patch at several places (repeat)")] = None,
    alpha: Annotated[float | None, typer.Option(help="Trigger opacity in (0,1] (blend default 0.1)")] = None,
    pattern: Annotated[str, typer.Option(help="square | random")] = "square",
    poison_rate: Annotated[float, typer.Option(help="Share of training images poisoned")] = 0.1,
    arch: Annotated[str | None, typer.Option(help="Architecture (default per dataset)")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default per dataset; 2 with --base)")] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed makes the same model")] = 0,
    base: Annotated[Path | None, typer.Option(
        help="Fine-tune this model (a .safetensors written by 'trojanscan train') on the poisoned data instead of "
             "training from scratch, at a quarter of the dataset's learning rate")] = None,
    device: Annotated[str, typer.Option(
        help="Where the network trains: cpu, cuda, cuda:N, mps or auto (CUDA if there is one)")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Train a clean or trojaned model and write it with its metadata and a ground-truth sidecar."""
    from dataclasses import replace

    from trojanscan._fileio import write_text_atomic
    from trojanscan.models import list_architectures, resolve_device, save_model
    from trojanscan.recipes import DATASETS, DEFAULTS, AttackSpec, TrainRecipe, build_model, make_attack, poison_finetune

    dev = resolve_device(device)
    if dataset not in DATASETS:
        raise InvalidInputError(f"--dataset {dataset!r} is unknown; choose one of {', '.join(DATASETS)}")
    _check_out(out, (".safetensors",), "--out")
    if arch is not None and arch not in list_architectures():
        raise InvalidInputError(f"--arch {arch!r} is unknown; choose one of {', '.join(list_architectures())}")
    if attack not in ("none", "badnets", "blend", "watermark", "trojannn"):
        raise InvalidInputError(f"--attack {attack!r} is unknown; choose none, badnets, blend, watermark or trojannn")
    spec = None if attack == "none" else AttackSpec(attack, target, trigger_size, position, tuple(positions or ()),
                                                     alpha, pattern, poison_rate)
    base_model = None
    if base is not None:
        base_model, base_recipe = _base_model(base, dataset, arch)
        recipe = poison_finetune(base_recipe, spec, epochs=2 if epochs is None else epochs, seed=seed)
    else:
        config = DEFAULTS[dataset]["config"]
        if epochs is not None:
            config = replace(config, epochs=epochs)
            config.check()
        recipe = TrainRecipe(dataset, arch=arch, attack=spec, config=config, seed=seed)
    train_data, test_data = _load_train_test(dataset, data_dir, seed)
    k = max(train_data.num_classes, int(train_data.y.max()) + 1)
    if spec is not None:  # validate the attack (sizes, targets, alpha) before any training
        make_attack(spec, train_data.input_shape, k, seed)
    built = build_model(recipe, train_data, test_data, progress=progress,
                        log=lambda s: typer.echo(s, err=True), base_model=base_model, device=dev)
    save_model(out, built.model, provenance=built.provenance())
    truth_path = out.with_suffix(".truth.json")
    write_text_atomic(truth_path, json.dumps(built.truth(), indent=1) + "\n")
    m = built.metrics
    tar = f"  TAR {m['tar']:.4f}" if "tar" in m else ""
    typer.echo(f"clean accuracy {m['clean_acc']:.4f}{tar}  ({m['train_seconds']:.0f} s)  -> {out}")


def _base_model(path: Path, dataset: str, arch: str | None) -> tuple[Classifier, TrainRecipe]:
    """``--base``: the model to fine-tune and the recipe its provenance records (needed to reproduce the result)."""
    from trojanscan.models import load_model
    from trojanscan.recipes import TrainRecipe

    if path.suffix != ".safetensors":
        raise InvalidInputError(f"--base {str(path)!r} must be a .safetensors model written by 'trojanscan train'")
    model = load_model(path)
    recorded = (model.metadata.get("provenance") or {}).get("recipe")
    if not isinstance(recorded, dict):
        raise InvalidInputError(
            f"--base {str(path)!r} records no training recipe in its metadata, so the fine-tuned model could not be "
            "reproduced; use a model written by 'trojanscan train'")
    recipe = TrainRecipe.from_dict(recorded)
    if recipe.dataset != dataset or (arch is not None and recipe.arch != arch):
        raise InvalidInputError(
            f"--base {str(path)!r} was trained as {recipe.dataset}/{recipe.arch}; it cannot be fine-tuned as "
            f"{dataset}/{arch or 'the default architecture'}")
    return model, recipe


def _load_train_test(dataset: str, data_dir: Path | None, seed: int) -> tuple[Any, Any]:
    if dataset == "synthetic":
        from trojanscan.data.synthetic import synthetic_digits, train_test_split

        return train_test_split(synthetic_digits(8000, seed=seed), 0.2, seed=seed)
    if data_dir is None:
        raise InvalidInputError(f"--data-dir is required for --dataset {dataset}")
    from trojanscan.data.registry import load_dataset

    return load_dataset(dataset, str(data_dir), "train"), load_dataset(dataset, str(data_dir), "test")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its models and reports")] = Path("runs/demo"),
    method: Annotated[str, typer.Option(help="Detector(s) to run")] = "all",
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Make a clean and a trojaned model on embedded synthetic digits, then scan both. No downloads."""
    from trojanscan.demo import run_demo

    run_demo(out, method=method, seed=seed, progress=progress, echo=typer.echo)


@app.command()
def patch(
    model: Annotated[Path, typer.Argument(help="Model file to patch")],
    out: Annotated[Path, typer.Option(
        help="Patched model path: .safetensors (registered architectures) or .pt (TorchScript, any model); "
             "also writes <stem>.patch.json")],
    method: Annotated[str, typer.Option(help="deep_inspect (data-free) | neural_cleanse (unlearning)")] = "deep_inspect",
    report: Annotated[Path | None, typer.Option(help="A scan report whose config and seed to reuse")] = None,
    data: Annotated[str, typer.Option(help="Clean data (.npz, dataset or image folder) for neural_cleanse and for measuring "
                                           "clean accuracy; 'none' = data-free")] = "none",
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs")] = 10,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    distill: Annotated[bool, typer.Option(
        help="Distil towards the original model to keep clean accuracy (--no-distill: the papers' plain fine-tuning)")] = True,
    rounds: Annotated[int, typer.Option(
        help="deep_inspect: up to this many patch-and-rescan rounds, stopping once the rescan no longer flags a "
             "target (1 = the paper's single fine-tune)")] = 1,
    strategy: Annotated[str, typer.Option(
        help="finetune (the papers: fine-tune on stamped images, labels kept) | prune (cut the hidden units the "
             "recovered triggers drive; needs a dense layer and a non-TorchScript model) | auto (prune where the "
             "network allows it and the prune stops the triggers on the substitutes, else finetune)")] = "auto",
    input_shape: Annotated[str | None, typer.Option(help="C,H,W (TorchScript without metadata)")] = None,
    allow_unsafe_pickle: Annotated[bool, typer.Option(help="Load Python pickles (runs code from the file!)")] = False,
    allow_unsafe_torchscript: Annotated[bool, typer.Option(
        help="Run a TorchScript file even if its code can touch files or the network (trusted files only!)")] = False,
    device: Annotated[str, typer.Option(
        help="Where the network runs: cpu, cuda, cuda:N, mps or auto (CUDA if there is one)")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Patch a trojaned model: fine-tune on triggered inputs with their correct labels, or prune the units the
    recovered triggers drive; print before/after."""
    from trojanscan.mitigation.defenses import check_strategy, patch_deep_inspect, patch_neural_cleanse, require_weights
    from trojanscan.models import export_torchscript, load_model, save_model
    from trojanscan.report.scan_report import ScanReport

    _check_out(out, (".safetensors", ".pt"), "--out")
    if method not in ("deep_inspect", "neural_cleanse"):
        raise InvalidInputError(f"--method {method!r} cannot patch; use deep_inspect or neural_cleanse")
    if epochs < 1:
        raise InvalidInputError(f"--epochs must be >= 1; got {epochs}")
    if rounds < 1:
        raise InvalidInputError(f"--rounds must be >= 1; got {rounds}")
    if rounds > 1 and method != "deep_inspect":
        raise InvalidInputError(f"--rounds applies to --method deep_inspect only; got --method {method}")
    check_strategy(strategy)
    params: dict[str, Any] = {}
    if report is not None:
        rep = ScanReport.load_json(report)
        sub = rep.reports.get(method, rep if rep.method == method else None)
        if sub is None:
            raise InvalidInputError(f"report {str(report)!r} has no {method} scan; scan with --method {method} or all")
        if not sub.trojaned:
            raise InvalidInputError(f"report {str(report)!r} says benign ({method}): nothing to patch")
        from trojanscan.detectors import detector_class

        accepted = set(detector_class(method)().get_params())
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in sub.config.items() if k in accepted}
        seed = sub.seed
    clean, pending = _read_clean(data)
    clf = load_model(model, allow_unsafe_pickle=allow_unsafe_pickle, allow_unsafe_torchscript=allow_unsafe_torchscript,
                     input_shape=_ints(input_shape, "input-shape"), device=device,
                     shape_candidates=None if clean is None else [clean.input_shape])
    clean, data_notes = _fit_clean(clean, pending, data, clf)
    for note in data_notes:
        typer.echo(f"note: {note}", err=True)
    require_weights(clf)  # before the output-format check: a query-only file has no architecture either
    if out.suffix == ".safetensors" and not clf.metadata.get("architecture"):
        raise InvalidInputError(
            f"{str(model)!r} is a {clf.metadata.get('format', 'model')} file without a registered architecture, so the "
            f"patched weights cannot be written as .safetensors; write TorchScript instead: --out {out.with_suffix('.pt')}")
    log = lambda s: typer.echo(s, err=True)  # noqa: E731
    if method == "deep_inspect":
        res = patch_deep_inspect(clf, params=params, seed=seed, epochs=epochs, eval_data=clean, distill=distill,
                                 rounds=rounds, strategy=strategy, progress=progress, log=log)
    else:
        res = patch_neural_cleanse(clf, clean, params=params, seed=seed, epochs=epochs, eval_data=clean,
                                   distill=distill, strategy=strategy, progress=progress, log=log)
    prov = {**clf.metadata.get("provenance", {}), "patched": {"from_sha256": clf.metadata.get("sha256"),
                                                              **res.summary()}}
    res.patch.model.metadata = {**clf.metadata, "provenance": prov}
    if out.suffix == ".pt":  # normalisation folded in, a sidecar with shape, classes and outputs; provenance in .patch.json
        export_torchscript(res.patch.model, out)
    else:
        save_model(out, res.patch.model, provenance=prov)
    from trojanscan._fileio import write_text_atomic

    write_text_atomic(out.with_suffix(".patch.json"), json.dumps(res.summary(), indent=1) + "\n")
    b, a = res.before, res.after
    typer.echo(f"before: {b.verdict} suspects {b.suspects} index {b.anomaly_index:.2f}")
    typer.echo(f"after:  {a.verdict} suspects {a.suspects} index {a.anomaly_index:.2f}"
               + (f" ({len(res.rounds)} rounds)" if len(res.rounds) > 1 else ""))
    pr = res.patch.pruning
    if res.patch.strategy == "prune":
        typer.echo(f"patch:  pruned {pr['pruned']} of {pr['units']} units at {pr['layer']}")
    else:
        tried = (f" (pruning left the triggers working on {pr['attack_success_after']:.1%} of the substitutes)"
                 if pr else "")
        typer.echo(f"patch:  fine-tuned, lr {res.patch.lr:g}{tried}")
    for k, v in res.metrics.items():
        typer.echo(f"  {k}: {v:.4f}")
    typer.echo(f"patched model: {out}")


@app.command()
def bench(
    experiment: Annotated[str, typer.Argument(help="Experiment name (see docs/RESULTS.md); 'list' lists them")],
    data_dir: Annotated[Path, typer.Option(help="Folder holding mnist/, gtsrb/, cifar10/")] = Path("../shared/data"),
    out: Annotated[Path, typer.Option(help="Output folder (tables, plots, cached models and scans)")] = Path("runs/bench"),
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
    full: Annotated[bool, typer.Option(help="Also run the optional extra scans (slower)")] = True,
    detectors: Annotated[str | None, typer.Option(
        help="Comma-separated detectors to run (default: all); the others' cells come from cached scans or say "
             "'not run'")] = None,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated model names or globs to train and scan (default: all), e.g. 'gtsrb_ft_badnets14_*'; "
             "the other rows come from cached scans or say 'not run'")] = None,
    from_scratch: Annotated[bool, typer.Option(
        help="Train the GTSRB attack variants (ni_table3, translucent, di_fig5) from scratch as the papers did, "
             "instead of poison-fine-tuning the clean seed-0 model for 2 epochs (about 4x less training)")] = False,
    device: Annotated[str, typer.Option(
        help="Where the networks train and are scanned: cpu, cuda, cuda:N, mps or auto")] = "cpu",
) -> None:
    """Rebuild a table or figure of the papers: trains (cached) models, scans them, writes CSV/JSON/MD/PNG."""
    from trojanscan.bench import experiments  # noqa: F401  (registers them)
    from trojanscan.bench.runner import EXPERIMENTS, run

    if experiment == "list":
        for name, fn in sorted(EXPERIMENTS.items()):
            typer.echo(f"{name:16s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return
    run(experiment, data_dir, out, progress=progress, full=full,
        detectors=tuple(d.strip() for d in detectors.split(",")) if detectors else None,
        models=None if models is None else tuple(m.strip() for m in models.split(",") if m.strip()),
        from_scratch=from_scratch, device=device)


@app.command("scan-zoo")
def scan_zoo_cmd(
    directory: Annotated[Path, typer.Argument(help="Folder of model files (.safetensors + .json, TorchScript)")],
    out: Annotated[Path, typer.Option(help="Output folder: reports/, summary.json, summary.md, models.csv")],
    truth: Annotated[Path | None, typer.Option(
        help="Ground truth JSON {file: {trojaned, targets}}; default: each model's <stem>.truth.json")] = None,
    data: Annotated[list[str] | None, typer.Option(
        help="Clean data (.npz, dataset or image folder), one per input shape; repeat it for several datasets. "
             "C,H,W=PATH serves models of input C,H,W, a folder's images fitted to it")] = None,
    method: Annotated[str, typer.Option(help="deep_inspect | neuron_inspect | neural_cleanse | all")] = "all",
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: one per CPU core)")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (needs the optional 'ray' extra)")] = None,
    input_shape: Annotated[str | None, typer.Option(help="C,H,W for TorchScript files without a sidecar")] = None,
    familywise: Annotated[bool, typer.Option(
        help="Per-model cutoff for the number of classes (false alarms per model); reuses saved reports")] = False,
    device: Annotated[str, typer.Option(
        help="Where the networks run: cpu, cuda, cuda:N, mps or auto (workers share the GPU)")] = "cpu",
    allow_unsafe_torchscript: Annotated[bool, typer.Option(
        help="Run TorchScript files even if their code can touch files or the network (trusted folders only!)")] = False,
    timeout: Annotated[float | None, typer.Option(
        help="Most seconds one model may take; it is then stopped and recorded as failed (default: no limit)")] = None,
    scale: Annotated[str, typer.Option(
        help="raw (the papers) or log: Neural Cleanse and DeepInspect test the log of their trigger norms; saved "
             "reports are re-decided, not rescanned")] = "raw",
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Scan every model in a folder; per detector ROC-AUC, cross-entropy, Brier, FP/FN, target accuracy, time."""
    from trojanscan.bench.zooscan import scan_zoo

    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {str(out)!r} exists and is not a folder")
    doc = scan_zoo(directory, out, truth=truth, data=data or [], method=method, seed=seed, workers=workers,
                   ray_address=ray_address, input_shape=_ints(input_shape, "input-shape"), familywise=familywise,
                   device=device, allow_unsafe_torchscript=allow_unsafe_torchscript, timeout_s=timeout,
                   scale=scale, progress=progress)
    typer.echo(f"{doc['n_models']} models scanned ({doc['n_failed']} failed) in {doc['wall_s']:.0f} s")
    for meth, s in doc["metrics"].items():
        auc = "n/a" if s["roc_auc"] is None else f"{s['roc_auc']:.3f}"
        typer.echo(f"  {meth:15s} ROC-AUC {auc:>5s}  FP {s['false_positives']}  FN {s['false_negatives']}")
    if doc.get("data_free_shapes"):
        shapes = ", ".join(",".join(map(str, sh)) for sh in doc["data_free_shapes"])
        typer.echo(f"note: models of input {shapes} had no --data of their shape and were scanned data-free; "
                   "--data C,H,W=PATH fits a folder's images to a shape", err=True)
    typer.echo(f"summary: {out / 'summary.md'}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps errors to exit code 2 with a one-line message."""
    try:
        app(args=argv, prog_name="trojanscan")  # standalone: usage errors exit 2, commands raise typer.Exit
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)
    except TrojanScanError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _console() -> None:  # console-script wrapper: the return value becomes the exit status
    sys.exit(main())
