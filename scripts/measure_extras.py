"""The side measurements quoted in docs/methods/*.md and docs/RESULTS.md that no bench experiment prints.

    .venv/bin/python scripts/measure_extras.py ni-mnist     # NeuronInspect settings on the MNIST models, seeds 0-2
    .venv/bin/python scripts/measure_extras.py ni-1x1       # NeuronInspect on the 1x1 Table 2 model, seeds 0-2, c=2, family-wise
    .venv/bin/python scripts/measure_extras.py ni-gtsrb     # NeuronInspect on the GTSRB BadNets model; trigger-corner share
    .venv/bin/python scripts/measure_extras.py gtsrb-tar    # GTSRB BadNets TAR split by how bright the trigger corner is
    .venv/bin/python scripts/measure_extras.py di-repeats [MODEL ...]  # DeepInspect, 3 vs 10 generator runs, seeds 0-2
    .venv/bin/python scripts/measure_extras.py di-generators [MODEL ...]  # DeepInspect: the verdict on the mean of three
                                                            # generators vs each generator's own, seeds 0-2
    .venv/bin/python scripts/measure_extras.py di-substitutes [MODEL ...]  # DeepInspect, 5 vs 20 inverted images / class
    .venv/bin/python scripts/measure_extras.py di-substitutes-zoo [5|20] [SEED]  # DeepInspect on the MNIST zoo, ROC-AUC
    .venv/bin/python scripts/measure_extras.py zoo-ranks [REPORTS]  # the multi-target zoo model's stamped outputs; each
                                                            # detector's three cheapest labels per zoo model
    .venv/bin/python scripts/measure_extras.py cifar-step   # cifar_resnet9 training: seconds per 256-image step
    .venv/bin/python scripts/measure_extras.py di-single    # DeepInspect with one generator (n_repeats=1), seeds 0-2
    .venv/bin/python scripts/measure_extras.py trojannn     # TrojanNN variants on mnist_clean_s0 (acc, TAR, activations)
    .venv/bin/python scripts/measure_extras.py patching     # DeepInspect patching: plain fine-tuning vs distillation
    .venv/bin/python scripts/measure_extras.py patch-df     # patching with triggers at random intensity, then DF rescan
    .venv/bin/python scripts/measure_extras.py patch-rounds # one fine-tune per lr, rescan, a second round with its triggers
    .venv/bin/python scripts/measure_extras.py patch-targets # the target's substitutes carry the trigger; patch without them
    .venv/bin/python scripts/measure_extras.py patch-prune [MODEL ...]  # patching by pruning vs fine-tuning, rescan
    .venv/bin/python scripts/measure_extras.py prune-layer  # pruning at the first vs the last dense layer's input
    .venv/bin/python scripts/measure_extras.py prune-arch [MODEL ...]  # Neural Cleanse unlearning vs pruning on the
                                                            # zoo's LeNet-5 / MLP / ResNet-8 trojans
    .venv/bin/python scripts/measure_extras.py prune-pooled # pruning a pooled ResNet-8's channels (DeepInspect, clean data)
    .venv/bin/python scripts/measure_extras.py patch-why    # plain patch: per-class recall; where the generated triggers lie
    .venv/bin/python scripts/measure_extras.py nc-gtsrb     # Neural Cleanse (defaults) on the GTSRB BadNets and clean models
    .venv/bin/python scripts/measure_extras.py di-asr       # DeepInspect, attack-success target 0.95, on the 12 px Figure 5 model
    .venv/bin/python scripts/measure_extras.py inversion-rescue  # Eq. 1 vs the rescued inversion, DeepInspect on each,
                                                                 # on the zoo's other-architecture TorchScript files
    .venv/bin/python scripts/measure_extras.py inversion-noise [MODEL ...]  # the rescue under noise (std 0.1 / 0.2 / 0.3),
                                                                 # DeepInspect on each
    .venv/bin/python scripts/measure_extras.py inversion-bn [MODEL ...]  # the batch-norm prior (bn_weight 0 / 0.01 / 0.1),
                                                                 # DeepInspect on each; MODEL a .pt path beside its
                                                                 # NAME.truth.json (default: the batch-norm networks of
                                                                 # runs/foreign and runs/zoo)
    .venv/bin/python scripts/measure_extras.py few-labels   # every detector on random 2/3/4-class networks
    .venv/bin/python scripts/measure_extras.py large-input  # DeepInspect's stages per step on 3x32..3x128 inputs
    .venv/bin/python scripts/measure_extras.py ae-width WIDTH [REPEATS] [MODEL ...]  # DeepInspect's auto-encoder scan
                                                            # of the 3x96x96 pair at auto-encoder width WIDTH
    .venv/bin/python scripts/measure_extras.py softmax-head # a TorchScript network ending in softmax: read as logits
                                                            # (--outputs logits, the old behaviour) vs detected (auto)
    .venv/bin/python scripts/measure_extras.py nes-cosine   # query-only gradient estimates vs the true input gradient
                                                            # on mnist_badnets4_t5, q = 5..200 direction pairs

Models come from runs/bench/models (scripts/make_models.py), data from ../shared/data. One torch thread.
"""

from __future__ import annotations

import sys

import torch

from trojanscan.data.registry import load_dataset
from trojanscan.detectors import get_detector
from trojanscan.models import load_model
from trojanscan.recipes import AttackSpec, make_attack

MODELS = "runs/bench/models"
DATA = "../shared/data"


def _model(name: str):  # type: ignore[no-untyped-def]
    return load_model(f"{MODELS}/{name}.safetensors")


def ni_mnist() -> None:
    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    settings = [{}, {"lambdas": (1.0, 0.0, 0.0)}, {"lambdas": (0.0, 1.0, 0.0)}, {"lambdas": (0.0, 0.0, 1.0)},
                {"exclude_own_class": False}, {"lambdas": (0.1, 1.0, 1.0)}]
    for m in ("mnist_badnets4_t5", "mnist_clean_s0", "mnist_clean_s1"):
        for kw in settings:
            rs = [get_detector("neuron_inspect", **kw).scan(_model(m), te, seed=s, progress=False) for s in (0, 1, 2)]
            print(m, kw, [(round(r.anomaly_index, 2), r.suspects) for r in rs], flush=True)


def ni_1x1() -> None:
    """NeuronInspect on the 1x1 Table 2 model at scan seeds 0-2, cutoff 2 and family-wise: the spare labels; the 4x4 one."""
    from trojanscan.bench.zoo import badnets, get_or_train

    m, _ = get_or_train("mnist_badnets1_t5", badnets("mnist", "5", size=1), f"{DATA}/mnist", MODELS, progress=False)
    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    for kw in ({}, {"familywise": True}):
        for s in (0, 1, 2):
            r = get_detector("neuron_inspect", **kw).scan(m, te, seed=s, progress=False)
            top = sorted(((c.anomaly_index, i) for i, c in enumerate(r.classes)), reverse=True)[:3]
            print(kw, "seed", s, f"cutoff {r.cutoff:.2f}", r.suspects, "top three", [(i, round(a, 2)) for a, i in top],
                  flush=True)
    r4 = get_detector("neuron_inspect").scan(_model("mnist_badnets4_t5"), te, seed=0, progress=False)
    print("mnist_badnets4_t5 seed 0:", f"{r4.anomaly_index:.2f}", r4.suspects, flush=True)


def ni_gtsrb() -> None:
    te = load_dataset("gtsrb", f"{DATA}/gtsrb", "test")
    m = _model("gtsrb_badnets4_t18")
    for kw in ({}, {"variant": "paper"}, {"rule": "guided"}):
        for s in (0, 1):
            r = get_detector("neuron_inspect", **kw).scan(m, te, seed=s, progress=False)
            print(kw, s, round(r.anomaly_index, 2), r.suspects, "index of 18:", round(r.classes[18].anomaly_index, 2))
    det = get_detector("neuron_inspect")
    det.scan(m, te, seed=0, progress=False)
    heat = det.artifacts_["heatmaps"]  # (K, H, W): mean map per class
    share = heat[:, 27:31, 27:31].sum((1, 2)) / heat.sum((1, 2))  # the 4x4 trigger, bottom-right, margin 1
    print(f"trigger-corner share of the mean map: target {float(share[18]):.4f}, median class {float(share.median()):.4f}")


def gtsrb_tar() -> None:
    te = load_dataset("gtsrb", f"{DATA}/gtsrb", "test")
    m = _model("gtsrb_badnets4_t18")
    atk = make_attack(AttackSpec("badnets", target="18"), (3, 32, 32), 43, 0)
    keep = atk.labels.sources(te.y)
    x = te.x[keep]
    with torch.no_grad():
        pred = torch.cat([m(atk.trigger.stamp(x[i : i + 1000])).argmax(1) for i in range(0, len(x), 1000)])
    hit = pred == 18
    mask = atk.trigger.mask
    bright = (x * mask).sum((1, 2, 3)) / (mask.sum() * x.shape[1])
    print(f"TAR {float(hit.float().mean()):.4f} over {len(x)} images")
    for lo, hi in ((0.0, 0.6), (0.6, 0.8), (0.8, 1.01)):
        sel = (bright >= lo) & (bright < hi)
        print(f"corner brightness [{lo}, {hi}): {int(sel.sum())} images, TAR {float(hit[sel].float().mean()):.4f}")


def di_single() -> None:
    for m in ("mnist_badnets4_t5", "mnist_clean_s0", "mnist_clean_s1"):
        for s in (0, 1, 2):
            r = get_detector("deep_inspect", n_repeats=1).scan(_model(m), None, seed=s, progress=False)
            print(m, s, round(r.anomaly_index, 2), r.suspects, flush=True)


def trojannn() -> None:
    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.attacks.trojannn import trojannn_attack
    from trojanscan.data.base import Dataset
    from trojanscan.training import accuracy

    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    te = Dataset(te.x[:2000], te.y[:2000], te.class_names, "mnist-test-2000")
    distilled = {"distill": 1.0, "mixup_distill": 1.0, "noise": 0.1}  # optional; the default is the original retraining
    for position, retrain, lr, kw in (("bottom-right", "after", 1e-3, {}), ("bottom-right", "after", 1e-3, distilled),
                                      ("bottom-right", "after", 3e-3, distilled), ("bottom-right", "selected", 1e-2, {}),
                                      ("center", "after", 1e-3, {})):
        m = _model("mnist_clean_s0")
        atk = make_attack(AttackSpec("trojannn", target="5", trigger_size=6, position=position), (1, 28, 28), 10, 0)
        a = trojannn_attack(m, atk, seed=0, retrain=retrain, lr=lr, progress=False, log=None, **kw)  # type: ignore[arg-type]
        print(position, retrain, lr, "distilled" if kw else "plain",
              f"acc {accuracy(m, te):.4f} TAR {trojan_activation_rate(m, te, a.trigger, a.labels):.4f}",
              "reached", [round(v, 2) for v in a.params["reached_activation"]],
              "clean max", [round(v, 2) for v in a.params["clean_max_activation"]], flush=True)


def patching() -> None:
    """The fine-tuning step of patch_deep_inspect (same scan seed, inversion seed and size), several settings."""
    plain = {"distill": 0.0, "mixup_distill": 0.0, "noise": 0.0}
    _patch_settings([plain, {**plain, "seed": 1}, {}, {"seed": 1}, {"epochs": 20}, {"epochs": 20, "seed": 1},
                     {"epochs": 20, "seed": 2}, {"stamp_fraction": 0.3}])


def patch_anchor() -> None:
    """The same fine-tuning step with one learning rate each, with and without the L2-SP anchor (deep_inspect.md)."""
    one = {"lrs": [1e-3]}
    _patch_settings([one, {**one, "seed": 2}, {**one, "distill": 3, "mixup_distill": 3}, {**one, "noise": 0.2},
                     {"lrs": [5e-4], "epochs": 20}, {**one, "anchor": 0.01}, {**one, "anchor": 0.1},
                     {"lrs": [3e-3], "anchor": 0.01}, {"lrs": [3e-3], "anchor": 0.01, "seed": 1},
                     {"lrs": [3e-3], "anchor": 0.003}, {"lrs": [3e-3], "anchor": 0.003, "seed": 1},
                     {"lrs": [3e-3], "anchor": 0.003, "seed": 2}],
                    blend=[{"lrs": [3e-3], "anchor": 0.003}])


def _patch_settings(settings: list[dict[str, object]], blend: list[dict[str, object]] | None = None) -> None:
    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.inversion import invert
    from trojanscan.mitigation.defenses import generator_triggers
    from trojanscan.mitigation.patching import additive_stamper, finetune_with_triggers
    from trojanscan.training import accuracy

    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    for name, spec, todo in (("mnist_badnets4_t5", AttackSpec("badnets", target="5"), settings),
                             ("mnist_blend_t5", AttackSpec("blend", target="5", alpha=0.1),
                              settings if blend is None else blend)):
        m = _model(name)
        atk = make_attack(spec, (1, 28, 28), 10, 0)
        det = get_detector("deep_inspect")
        rep = det.scan(m, None, seed=0, progress=False)
        triggers = generator_triggers(det.generators_)
        inv = invert(m, n_per_class=20, seed=1).data

        tar = trojan_activation_rate(m, te, atk.trigger, atk.labels)
        print(name, "flagged", rep.suspects, f"acc {accuracy(m, te):.4f} TAR {tar:.4f}")
        for kw in todo:
            r = finetune_with_triggers(m, inv, additive_stamper(triggers, rep.suspects), **kw)  # type: ignore[arg-type]
            print(" ", kw, "lr", r.lr, f"acc {accuracy(r.model, te):.4f}",
                  f"TAR {trojan_activation_rate(r.model, te, atk.trigger, atk.labels):.4f}", flush=True)


def multi_target() -> None:
    """mnist_multi3 ({1,4,7}): the model's probabilities on stamped images, and DeepInspect without the success target."""
    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    m = _model("mnist_multi3")
    atk = make_attack(AttackSpec("badnets", target="1,4,7"), (1, 28, 28), 10, 0)
    with torch.no_grad():
        p = torch.softmax(m(atk.trigger.stamp(te.x[:2000])), 1).mean(0)
    print("mean probability on 2000 stamped test images", [round(float(v), 3) for v in p])
    for kw in ({"asr_target": None, "n_repeats": 1}, {"asr_target": 0.9, "n_repeats": 1}):
        r = get_detector("deep_inspect", **kw).scan(m, None, seed=0, progress=False)
        print(kw, f"DF {r.anomaly_index:.2f}", r.suspects, "statistics", [round(c.statistic, 1) for c in r.classes],
              "attack success", [round(c.extra["attack_success"], 2) for c in r.classes], flush=True)


def _badnets_patch_setup():  # type: ignore[no-untyped-def]
    """mnist_badnets4_t5 as patch_deep_inspect sees it: test set, model, true attack, scan (seed 0), 20 inverted / class."""
    from trojanscan.inversion import invert

    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    m = _model("mnist_badnets4_t5")
    atk = make_attack(AttackSpec("badnets", target="5"), (1, 28, 28), 10, 0)
    det = get_detector("deep_inspect")
    rep = det.scan(m, None, seed=0, progress=False)
    return te, m, atk, det, rep, invert(m, n_per_class=20, seed=1).data


def patch_df() -> None:
    """Does unlearning triggers at random intensities (x s, s uniform) lower DeepInspect's DF after patching?"""
    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.mitigation.defenses import generator_triggers
    from trojanscan.mitigation.patching import additive_stamper, finetune_with_triggers
    from trojanscan.training import accuracy

    te, m, atk, det, rep, inv = _badnets_patch_setup()
    base = generator_triggers(det.generators_)
    for lo, hi in ((1.0, 1.0), (0.5, 2.0), (0.3, 3.0)):
        def trig(t: torch.Tensor, g: torch.Generator, lo: float = lo, hi: float = hi) -> torch.Tensor:
            return (lo + (hi - lo) * torch.rand((t.shape[0], 1, 1, 1), generator=g)) * base(t, g)

        r = finetune_with_triggers(m, inv, additive_stamper(trig, rep.suspects))
        after = get_detector("deep_inspect").scan(r.model, None, seed=0, progress=False)
        print(f"scale [{lo}, {hi}]: acc {accuracy(r.model, te):.4f}",
              f"TAR {trojan_activation_rate(r.model, te, atk.trigger, atk.labels):.4f}",
              f"DF after {after.anomaly_index:.2f} {after.suspects}, statistic of 5 (mean hinge): "
              f"{rep.classes[5].statistic:.2f} -> {after.classes[5].statistic:.2f}", flush=True)


def patch_rounds() -> None:
    """One fine-tune per learning rate, a data-free rescan, then a second round with the rescan's triggers added."""
    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.mitigation.defenses import generator_triggers
    from trojanscan.mitigation.patching import additive_stamper, finetune_with_triggers
    from trojanscan.training import accuracy

    te, m, atk, det, rep, inv = _badnets_patch_setup()
    print("before", f"DF {rep.anomaly_index:.2f} {rep.suspects}", f"acc {accuracy(m, te):.4f}",
          f"TAR {trojan_activation_rate(m, te, atk.trigger, atk.labels):.4f}", flush=True)
    for lr in (1e-4, 3e-4, 5e-4, 1e-3):
        pool, cur = list(det.generators_), m
        for r in (1, 2):  # as patch_deep_inspect(rounds=2), but the second round runs whatever the rescan says
            res = finetune_with_triggers(cur, inv, additive_stamper(generator_triggers(pool), rep.suspects), lrs=(lr,),
                                         teacher=m)
            cur = res.model
            d = get_detector("deep_inspect")
            after = d.scan(cur, None, seed=0, progress=False)
            print(f"lr {lr:g} round {r}: acc {accuracy(cur, te):.4f}",
                  f"TAR {trojan_activation_rate(cur, te, atk.trigger, atk.labels):.4f}",
                  f"rescan DF {after.anomaly_index:.2f} {after.suspects}", flush=True)
            pool += list(d.generators_)


def patch_targets() -> None:
    """The flagged target's own substitutes carry the trigger: their brightness in the true trigger's square, and the
    fine-tuning step with them dropped from the patching set (labels of the rest kept, as in patch_deep_inspect)."""
    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.mitigation.defenses import generator_triggers
    from trojanscan.mitigation.patching import additive_stamper, finetune_with_triggers
    from trojanscan.training import accuracy

    te, m, atk, det, rep, inv = _badnets_patch_setup()
    mask = atk.trigger.mask
    bright = [float(((inv.x[inv.y == k] * mask).sum((1, 2, 3)) / mask.sum()).mean()) for k in range(m.num_classes)]
    print("mean value in the trigger's 4x4 square, per class of the 20 inverted images:", [round(b, 3) for b in bright])
    trig = generator_triggers(det.generators_)
    is_target = torch.isin(inv.y, torch.tensor(rep.suspects))
    kept = inv.subset(torch.nonzero(~is_target).flatten(), "no-target")
    # the target's substitutes with the pixels holding 90 % of its generated triggers' mass painted with the mean of
    # the other classes' substitutes
    t = torch.full((200,), rep.suspects[0], dtype=torch.int64)
    mass = trig(t, torch.Generator().manual_seed(0)).abs().mean(0).sum(0)
    srt, idx = mass.flatten().sort(descending=True)
    paint = torch.zeros(mass.numel())
    paint[idx[: int(((srt.cumsum(0) / srt.sum()) <= 0.9).sum()) + 1]] = 1
    paint = paint.view_as(mass)
    x = inv.x.clone()
    x[is_target] = (1 - paint) * x[is_target] + paint * inv.x[~is_target].mean(0)
    with torch.no_grad():
        p_t = float(torch.softmax(m(x[is_target]), 1)[:, rep.suspects[0]].mean())
    print(f"painted {int(paint.sum())} pixels; the model's mean p(target) on the painted substitutes {p_t:.3f}")
    painted = type(inv)(x, inv.y.clone(), inv.class_names, "painted")
    for name, data, todo in (("all substitutes", inv, 4), ("target's dropped", kept, 4), ("target's painted", painted, 1)):
        for kw in ({"lrs": (1e-3,)}, {"lrs": (1e-3,), "seed": 1}, {"lrs": (2e-3,)}, {"lrs": (2e-3,), "seed": 1})[:todo]:
            r = finetune_with_triggers(m, data, additive_stamper(trig, rep.suspects), **kw)  # type: ignore[arg-type]
            pred = r.model.predict(te.x)
            recall = [round(float((pred[te.y == k] == k).float().mean()), 3) for k in range(m.num_classes)]
            print(name, kw, f"acc {accuracy(r.model, te):.4f}",
                  f"TAR {trojan_activation_rate(r.model, te, atk.trigger, atk.labels):.4f}", "recall per class", recall,
                  flush=True)


def _truth_attack(name: str):  # type: ignore[no-untyped-def]
    """The true trigger and label mode of a model, from its ground-truth sidecar (benchmark only)."""
    return _truth_attack_at(MODELS, name)


def _truth_attack_at(folder: str, name: str):  # type: ignore[no-untyped-def]
    import json

    from trojanscan.attacks.labels import LabelMode
    from trojanscan.triggers import Trigger

    t = json.loads(open(f"{folder}/{name}.truth.json").read())
    lm = t["label_mode"]
    return Trigger.from_dict(t["trigger"]), LabelMode(lm["kind"], tuple(lm["targets"]), lm["num_classes"])


def _recall(model, te, ks) -> str:  # type: ignore[no-untyped-def]
    pred = model.predict(te.x)
    return "recall " + ", ".join(f"{k}: {float((pred[te.y == k] == k).float().mean()):.3f}" for k in ks)


def patch_prune() -> None:
    """DeepInspect patching by pruning the units its triggers drive (mitigation.pruning) vs its fine-tuning, with a
    data-free rescan. Models: the arguments, default the trojaned MNIST models (scan seed 0, 20 inverted images per
    class, seed 1, as patch_deep_inspect); a clean model the scan flags shows what patching a false positive costs.
    Recall of each flagged label on the test set is printed too."""
    import json

    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.inversion import invert
    from trojanscan.mitigation.defenses import generator_triggers
    from trojanscan.mitigation.patching import additive_stamper, finetune_with_triggers
    from trojanscan.mitigation.pruning import prune_trigger_units
    from trojanscan.training import accuracy

    for name in sys.argv[2:] or ["mnist_badnets4_t5", "mnist_blend_t5", "mnist_multi3", "mnist_trojannn_t5"]:
        dataset = name.split("_")[0]
        te = load_dataset(dataset, f"{DATA}/{dataset}", "test")
        m = _model(name)
        truth = _truth_attack(name) if json.loads(open(f"{MODELS}/{name}.truth.json").read())["trojaned"] else None
        tar = lambda model: (  # noqa: E731
            f"TAR {trojan_activation_rate(model, te, *truth):.4f}" if truth else "clean model")  # noqa: B023
        recall = lambda model, ks: _recall(model, te, ks)  # noqa: E731, B023
        det = get_detector("deep_inspect")
        rep = det.scan(m, None, seed=0, progress=False)
        print(name, f"acc {accuracy(m, te):.4f}", tar(m), f"DF {rep.anomaly_index:.2f} {rep.suspects}",
              recall(m, rep.suspects), flush=True)
        if not rep.suspects:
            continue
        stamper = additive_stamper(generator_triggers(det.generators_), rep.suspects)
        inv = invert(m, n_per_class=20, seed=1).data
        runs = [("prune", {"cutoff": c}) for c in (3.0, 2.0, 5.0)] + [("finetune", {})]
        for how, kw in runs if name == "mnist_badnets4_t5" else runs[:1] + runs[-1:]:
            if how == "prune":
                r = prune_trigger_units(m, inv, stamper, rep.suspects, **kw)  # type: ignore[arg-type]
                what = (f"pruned {r.pruning['pruned']} of {r.pruning['outliers']} outliers "
                        f"(agreement {r.pruning['agreement']:.3f})")
            else:
                r = finetune_with_triggers(m, inv, stamper, **kw)
                what = f"lr {r.lr:g}"
            after = get_detector("deep_inspect").scan(r.model, None, seed=0, progress=False)
            print(f"  {how} {kw} {what}: acc {accuracy(r.model, te):.4f}", tar(r.model),
                  f"rescan DF {after.anomaly_index:.2f} {after.suspects} ({r.seconds:.0f} s)", recall(r.model, rep.suspects),
                  flush=True)


def prune_layer() -> None:
    """Which layer to prune: the 16-128 units of largest activation gap (stamped minus clean substitutes) cut at the
    first dense layer's input (the flattened feature map, mitigation.pruning's choice) or at the last one's (the
    penultimate layer, Neural Cleanse's), on mnist_badnets4_t5 with DeepInspect's triggers (as patch-prune)."""
    import torch.nn as nn

    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.mitigation.defenses import generator_triggers
    from trojanscan.mitigation.patching import additive_stamper
    from trojanscan.mitigation.pruning import unit_activations
    from trojanscan.models.classifier import clone_classifier
    from trojanscan.training import accuracy

    te, m, atk, det, rep, inv = _badnets_patch_setup()
    stamper = additive_stamper(generator_triggers(det.generators_), rep.suspects)
    stamped = stamper(inv.x, torch.Generator().manual_seed(0))
    dense = [name for name, mod in m.module.named_modules() if isinstance(mod, nn.Linear)]
    for where, name in (("first dense layer's input", dense[0]), ("last dense layer's input", dense[-1])):
        layer = dict(m.module.named_modules())[name]
        gap = (unit_activations(m, layer, stamped) - unit_activations(m, layer, inv.x)).mean(0)
        order = gap.argsort(descending=True)
        for k in (16, 32, 64, 128):
            pm = clone_classifier(m)
            with torch.no_grad():
                dict(pm.module.named_modules())[name].weight[:, order[:k]] = 0  # type: ignore[index]
            print(f"{where} ({name}, {gap.numel()} units), top {k} cut: acc {accuracy(pm, te):.4f}",
                  f"TAR {trojan_activation_rate(pm, te, atk.trigger, atk.labels):.4f}", flush=True)


def _arch_scan(name: str, method: str):  # type: ignore[no-untyped-def]
    """A zoo other-architecture model (scripts/make_zoo.py --only mnist-arch, trained or read from runs/zoo/build),
    its truth, the bench's 500 clean MNIST test images and the other 9,500, and ``method``'s scan on the 500."""
    from pathlib import Path

    from make_zoo import ZOO

    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.bench.runner import Context
    from trojanscan.bench.zoo import get_or_train
    from trojanscan.training import accuracy

    ctx = Context(Path(DATA), Path("runs/bench"), progress=False)
    clean, test = ctx.clean_data("mnist"), ctx.unseen_test("mnist")
    m, _ = get_or_train(name, ZOO["mnist-arch"][name], f"{DATA}/mnist", "runs/zoo/build", progress=False, log=None)
    trigger, labels = _truth_attack_at("runs/zoo/build", name)
    det = get_detector(method)
    rep = det.scan(m, clean, seed=0, progress=False)
    print(name, f"acc {accuracy(m, test):.4f} TAR {trojan_activation_rate(m, test, trigger, labels):.4f}",
          f"{method} (clean data) {rep.anomaly_index:.2f} {rep.suspects}", flush=True)
    return m, (trigger, labels), clean, test, det, rep


def prune_arch() -> None:
    """Neural Cleanse's patches on the zoo's three other-architecture trojans (LeNet-5 with tanh, an MLP, a ResNet-8
    with global pooling; scripts/make_zoo.py --only mnist-arch recipes, trained or read from runs/zoo/build):
    unlearning (fine-tuning) vs pruning with the reversed triggers, on 500 seeded clean test images (the bench's
    sample); accuracy and TAR on the other 9,500."""
    from make_zoo import ZOO

    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.mitigation.defenses import patch_neural_cleanse
    from trojanscan.training import accuracy

    for name, recipe in ZOO["mnist-arch"].items():
        if recipe.attack is None or (sys.argv[2:] and name not in sys.argv[2:]):
            continue
        m, (trigger, labels), clean, test, det, rep = _arch_scan(name, "neural_cleanse")
        if not rep.suspects:
            continue
        for strategy in ("finetune", "prune"):
            out = patch_neural_cleanse(m, clean, strategy=strategy, scanned=(det, rep), progress=False)
            pr = out.patch.pruning
            what = (f"pruned {pr['pruned']} of {pr['outliers']} outliers ({pr['units']} units at {pr['layer']}), "
                    f"agreement {pr['agreement']:.3f}, stamped substitutes sent to a target "
                    f"{pr['attack_success_before']:.3f} -> {pr['attack_success_after']:.3f}") if pr else f"lr {out.patch.lr:g}"
            print(f"  {strategy} ({what}): acc {accuracy(out.patch.model, test):.4f}",
                  f"TAR {trojan_activation_rate(out.patch.model, test, trigger, labels):.4f}",
                  f"rescan {out.after.anomaly_index:.2f} {out.after.suspects}", flush=True)


def prune_pooled() -> None:
    """Pruning on a globally pooled network (the zoo's ResNet-8 BadNets trojan, whose dense layer reads 64 channels):
    DeepInspect scanned with the bench's 500 clean images (Neural Cleanse does not flag this retrain), then
    mitigation.pruning with the attacker's true trigger (the best case) and with DeepInspect's generated triggers on those
    images, and a fine-tune for comparison; accuracy, TAR and the target's recall on the other 9,500 test images."""
    from trojanscan.attacks import trojan_activation_rate
    from trojanscan.mitigation.defenses import generator_triggers
    from trojanscan.mitigation.patching import additive_stamper, finetune_with_triggers
    from trojanscan.mitigation.pruning import prune_trigger_units
    from trojanscan.training import accuracy

    m, (trigger, labels), clean, test, det, rep = _arch_scan("resnet8_badnets5_mid_t3", "deep_inspect")
    # the best case a detector could hand over: the attacker's own trigger (a measurement; no detector sees it)
    for guard in (False, True):  # the guard without / with the target's own (clean) images
        r = prune_trigger_units(m, clean, lambda x, _g: trigger.stamp(x), [3], guard_targets=guard)
        pr = r.pruning
        print(f"  prune with the true trigger, guard_targets={guard}: {pr['pruned']} of {pr['outliers']} outliers",
              f"({pr['units']} units), agreement {pr['agreement']:.3f}: acc {accuracy(r.model, test):.4f}",
              f"TAR {trojan_activation_rate(r.model, test, trigger, labels):.4f}", _recall(r.model, test, [3]), flush=True)
    if not rep.suspects:
        return
    stamper = additive_stamper(generator_triggers(det.generators_), rep.suspects)
    r = prune_trigger_units(m, clean, stamper, rep.suspects, guard_targets=True)
    pr = r.pruning
    print(f"  prune: {pr['pruned']} of {pr['outliers']} outliers ({pr['units']} units at {pr['layer']}), agreement",
          f"{pr['agreement']:.3f}, stamped images sent to a target {pr['attack_success_before']:.3f} ->",
          f"{pr['attack_success_after']:.3f}: acc {accuracy(r.model, test):.4f}",
          f"TAR {trojan_activation_rate(r.model, test, trigger, labels):.4f}", flush=True)
    f = finetune_with_triggers(m, clean, stamper)
    print(f"  fine-tune (lr {f.lr:g}): acc {accuracy(f.model, test):.4f}",
          f"TAR {trojan_activation_rate(f.model, test, trigger, labels):.4f}", flush=True)


def patch_why() -> None:
    """Where the plain patch loses accuracy (recall per class) and where DeepInspect's triggers for 5 lie."""
    from trojanscan.inversion import invert
    from trojanscan.mitigation.defenses import generator_triggers
    from trojanscan.mitigation.patching import additive_stamper, finetune_with_triggers

    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    m = _model("mnist_badnets4_t5")
    det = get_detector("deep_inspect")
    rep = det.scan(m, None, seed=0, progress=False)
    for i, gm in enumerate(det.generators_):
        with torch.no_grad():
            d = gm(torch.randn(256, gm.z_dim, generator=torch.Generator().manual_seed(i)), torch.full((256,), 5)).abs()
        heat = d.mean(0).sum(0)
        print(f"generator {i}: share of |G(z, 5)| in the true 4x4 corner {float(heat[23:27, 23:27].sum() / heat.sum()):.3f}")
    inv = invert(m, n_per_class=20, seed=1).data
    for kw in ({"distill": 0.0, "mixup_distill": 0.0, "noise": 0.0}, {}):
        r = finetune_with_triggers(m, inv, additive_stamper(generator_triggers(det.generators_), rep.suspects), **kw)
        pred = r.model.predict(te.x)
        recall = [round(float((pred[te.y == k] == k).float().mean()), 3) for k in range(10)]
        print(kw or "distillation (default)", "recall per class:", recall, flush=True)


def nc_gtsrb() -> None:
    """The bench's cached Neural Cleanse scans of core_gtsrb's two trained models (runs/bench; scans if missing).

    Same cache key as ``trojanscan bench core_gtsrb``, which would also train gtsrb_clean_s1 first.
    """
    from pathlib import Path

    from trojanscan.bench.runner import Context, attack
    from trojanscan.recipes import TrainRecipe

    ctx = Context(Path(DATA), Path("runs/bench"), progress=True)
    for name, recipe in (("gtsrb_badnets4_t18", TrainRecipe("gtsrb", attack=attack("18"))),
                         ("gtsrb_clean_s0", TrainRecipe("gtsrb", seed=0))):
        model, _ = ctx.model(name, recipe)
        rep = ctx.scan(name, model, "neural_cleanse", ctx.clean_data("gtsrb"))
        top = sorted(rep.classes, key=lambda c: -c.anomaly_index)[:3]
        print(name, rep.verdict, rep.suspects, f"index {rep.anomaly_index:.2f}", f"{rep.runtime_s:.0f} s",
              f"{rep.model_queries} queries", "top:", [(c.label, round(c.anomaly_index, 2)) for c in top],
              "label 18:", round(rep.classes[18].anomaly_index, 2), flush=True)


def di_asr() -> None:
    """DeepInspect with asr_target 0.95 (default 0.99) on gtsrb_ft_badnets12_t18 (trained by ``trojanscan bench di_fig5``)."""
    rep = get_detector("deep_inspect", asr_target=0.95).scan(_model("gtsrb_ft_badnets12_t18"), None, seed=0,
                                                              progress=False)
    low = sorted(rep.classes, key=lambda c: c.statistic)[:5]
    print(round(rep.anomaly_index, 2), rep.suspects, [(c.label, round(c.statistic, 3)) for c in low], rep.notes,
          f"{rep.runtime_s:.0f} s", flush=True)


ARCH_ZOO = ["lenet5_clean_s30", "lenet5_badnets3_tr_t2", "mlp_clean_s31", "mlp_random4_bl_t7", "resnet8_clean_s32",
            "resnet8_badnets5_mid_t3"]


def inversion_rescue() -> None:
    """Model inversion with Eq. 1 alone (the default) and with the rescue (``rescue_below=0.5``) on the zoo's
    other-architecture models (``scripts/make_zoo.py --only mnist-arch``), and DeepInspect's scan on each substitute
    set. DeepInspect given a substitute set as its data runs exactly as its data-free path on that set (the same
    labels by prediction, the same seeded generators), so the Eq. 1 row equals ``trojanscan scan --data none``."""
    from trojanscan.inversion import invert

    for name in ARCH_ZOO:
        model = load_model(f"runs/zoo/{name}.pt", input_shape=(1, 28, 28))
        for rescue in (0.0, 0.5):
            inv = invert(model, seed=0, rescue_below=rescue)
            covered = len(set(model.predict(inv.data.x).tolist()))
            rep = get_detector("deep_inspect").scan(model, inv.data, seed=0, progress=False)
            print(name, f"rescue_below={rescue}", f"rescued {inv.rescued}", f"confidence mean {inv.confidence.mean():.3f}",
                  f"min {inv.confidence.min():.3f}", f"classes {covered}/10", f"DF {rep.anomaly_index:.2f}", rep.suspects,
                  f"{rep.runtime_s:.0f} s", flush=True)


def _di_seeds(param: str, values: tuple[int, ...]) -> None:
    """DeepInspect on the models named in the arguments (default the three core MNIST models) with ``param`` at each
    of ``values``, scan seeds 0-2: DF, suspects, the three smallest statistics and the median."""
    which = sys.argv[2:] or ["mnist_clean_s0", "mnist_clean_s1", "mnist_badnets4_t5"]
    for name in which:
        for n in values:
            for s in (0, 1, 2):
                r = get_detector("deep_inspect", **{param: n}).scan(_model(name), None, seed=s, progress=False)
                low = sorted(range(len(r.classes)), key=lambda i: r.classes[i].statistic)[:3]
                print(name, f"{param} {n} seed {s}: DF {r.anomaly_index:.2f} {r.suspects}", "three smallest",
                      [(i, round(r.classes[i].statistic, 2)) for i in low],
                      f"median {float(torch.tensor([c.statistic for c in r.classes]).median()):.2f}",
                      f"({r.runtime_s:.0f} s)", flush=True)


def di_repeats() -> None:
    """DeepInspect with 3 (our default) and 10 (the paper's) averaged generator runs, scan seeds 0-2: does averaging
    more runs steady the verdict?"""
    _di_seeds("n_repeats", (3, 10))


def di_generators() -> None:
    """Default data-free DeepInspect (three generators) on the models named in the arguments (default the three core
    MNIST models), scan seeds 0-2: the DF and suspects of the test on the generators' mean, next to what each
    generator alone flags (the report's per-generator note): does the verdict rest on every generator?"""
    import numpy as np

    from trojanscan import stats as st
    from trojanscan.detectors.deep_inspect import GENERATOR_NOTE, values_on_scale

    for name in sys.argv[2:] or ["mnist_clean_s0", "mnist_clean_s1", "mnist_badnets4_t5"]:
        for s in (0, 1, 2):
            r = get_detector("deep_inspect").scan(_model(name), None, seed=s, progress=False)
            each = [n.split(" flags ", 1)[1] for n in r.notes if n.startswith(GENERATOR_NOTE)]
            dfs = [st.decide(values_on_scale(*(np.array([c.extra[f"{k}_run{g}"] for c in r.classes])
                                               for k in ("hinge", "l1")), "raw")[0], test="dmad").anomaly_index
                   for g in (1, 2, 3)]
            print(name, f"seed {s}: mean DF {r.anomaly_index:.2f} {r.suspects}; each generator (DF "
                  f"{' / '.join(f'{v:.2f}' for v in dfs)}) flags {each[0]} ({r.runtime_s:.0f} s)", flush=True)


def di_substitutes() -> None:
    """DeepInspect with 5 (the paper's) and 20 inverted images per class, scan seeds 0-2: is the seed-to-seed swing of
    the DF, which session 11 traced to the substitutes, smaller with more of them?"""
    _di_seeds("n_per_class", (5, 20))


def di_substitutes_zoo() -> None:
    """Data-free DeepInspect on the 13-model MNIST zoo (scripts/make_zoo.py --only mnist, runs/zoo) with the number
    of inverted images per class given as the first argument (default 5) and the scan seed as the second (default
    0): each model's DF, and the ROC-AUC, false positives / negatives at c = 2 and first-suspect target accuracy over
    the zoo."""
    from pathlib import Path

    from make_zoo import ZOO

    from trojanscan.bench.metrics import roc_auc
    from trojanscan.bench.zooscan import load_truth

    n = int(sys.argv[2]) if sys.argv[2:] else 5
    seed = int(sys.argv[3]) if sys.argv[3:] else 0
    y, score, fp, fn, hit, named = [], [], 0, 0, 0, 0
    for name in ZOO["mnist"]:
        path = Path(f"runs/zoo/{name}.safetensors")
        truth = load_truth([path], None)[path.name]  # all-to-all: no target to name
        targets = truth["targets"]
        r = get_detector("deep_inspect", n_per_class=n).scan(load_model(path), None, seed=seed, progress=False)
        y.append(int(truth["trojaned"]))
        score.append(r.anomaly_index)
        fp += int(not truth["trojaned"] and r.verdict == "trojaned")
        fn += int(truth["trojaned"] and r.verdict != "trojaned")
        if truth["trojaned"] and targets:
            named += 1
            hit += int(bool(r.suspects) and r.suspects[0] in targets)
        print(f"n_per_class {n} seed {seed} {name} (truth {targets if truth['trojaned'] else 'clean'}): DF {r.anomaly_index:.2f}",
              r.suspects, f"({r.runtime_s:.0f} s)", flush=True)
    print(f"n_per_class {n} seed {seed}: ROC-AUC {roc_auc(y, score):.3f}, false positives {fp} of {len(y) - sum(y)},",
          f"false negatives {fn} of {sum(y)}, first suspect a true target {hit} of {named}", flush=True)


def zoo_ranks() -> None:
    """Why the multi-target zoo model (targets {0, 2, 9}) is flagged on label 3: where its trigger sends stamped test
    images, source by source; then, from the per-model reports of ``trojanscan scan-zoo runs/zoo ... --out
    runs/zoo_scan`` (first argument: the reports folder), each detector's three labels of smallest statistic (the
    cheapest targets) on every MNIST zoo model, and how often each label is the cheapest on the clean ones."""
    import json
    import statistics
    from collections import Counter
    from pathlib import Path

    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    m = load_model("runs/zoo/mnist_multi3_t029.safetensors")
    atk = make_attack(AttackSpec("badnets", target="0,2,9"), (1, 28, 28), 10, 0)
    x, y = te.x[:3000], te.y[:3000]
    with torch.no_grad():
        p = torch.softmax(m(atk.trigger.stamp(x)), 1)
    print("mnist_multi3_t029, 3000 stamped test images: mean probability per label",
          [round(float(v), 3) for v in p.mean(0)])
    pred = p.argmax(1)
    for s in range(10):
        print(f"  source {s}: predictions per label {torch.bincount(pred[y == s], minlength=10).tolist()}")
    print(f"  all sources: predictions per label {torch.bincount(pred, minlength=10).tolist()}")
    folder = Path(sys.argv[2] if sys.argv[2:] else "runs/zoo_scan/reports")
    for method, rep in json.loads((folder / "mnist_multi3_t029.json").read_text())["reports"].items():
        stats = [round(c["statistic"], 1) for c in rep["classes"]]
        print(f"mnist_multi3_t029 {method}: statistic per label {stats}, median {statistics.median(stats):.1f}")
    first: dict[str, Counter[int]] = {}
    top3: Counter[str] = Counter()
    for f in sorted(folder.glob("mnist_*.json")):
        truth = json.loads(Path("runs/zoo", f.stem + ".truth.json").read_text())
        cells = []
        for method, rep in json.loads(f.read_text())["reports"].items():
            ranked = sorted(rep["classes"], key=lambda c: c["statistic"])
            cells.append(f"{method} {[c['label'] for c in ranked[:3]]}")
            if not truth["trojaned"]:
                first.setdefault(method, Counter())[ranked[0]["label"]] += 1
            top3[method] += int(3 in [c["label"] for c in ranked[:3]])
        tag = truth["targets"] if truth["trojaned"] else "clean"
        print(f"{f.stem} (truth {tag}): cheapest labels", " | ".join(cells))
    for method, counts in first.items():
        print(f"{method}: cheapest label on the clean models {dict(counts)}; label 3 among the three cheapest on",
              f"{top3[method]} of {len(list(folder.glob('mnist_*.json')))} models")


def cifar_step() -> None:
    """Seconds per SGD step of cifar_resnet9 on 256 random 3x32x32 images (one thread): how long the CIFAR-10 default
    recipe (16 epochs of 50,000 images) would take here, before the data exists."""
    import time

    from trojanscan.models import build_architecture

    m = build_architecture("cifar_resnet9", (3, 32, 32), 10).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(256, 3, 32, 32, generator=gen), torch.randint(0, 10, (256,), generator=gen)
    times = []
    for _ in range(8):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step = sorted(times[2:])[len(times[2:]) // 2]  # median after two warm-up steps
    print("s per step", [round(v, 2) for v in times], f"median {step:.2f};",
          f"epoch of 50,000 images about {step * 50000 / 256 / 60:.1f} min,",
          f"16 epochs about {16 * step * 50000 / 256 / 3600:.1f} h")


def inversion_noise() -> None:
    """Noise-robust rescue on the zoo's other-architecture models: the rescue (``rescue_below=0.5``) with Gaussian
    noise of std ``rescue_noise_std`` added to the images the model sees at every rescue step, so that the
    substitutes must stay their class under noise, as natural images do. DeepInspect on each substitute set (as in
    ``inversion-rescue``), with the target's rank among the per-class statistics."""
    import json

    from trojanscan.inversion import invert

    which = sys.argv[2:] or ARCH_ZOO
    for name in which:
        model = load_model(f"runs/zoo/{name}.pt", input_shape=(1, 28, 28))
        truth = json.loads(open(f"runs/zoo/{name}.truth.json").read())
        targets = [int(t) for t in truth.get("targets", [])]
        for rescue, noise in ((0.5, 0.1), (0.5, 0.2), (0.5, 0.3)):
            inv = invert(model, seed=0, rescue_below=rescue, rescue_noise_std=noise)
            covered = len(set(model.predict(inv.data.x).tolist()))
            rep = get_detector("deep_inspect").scan(model, inv.data, seed=0, progress=False)
            stats = [c.statistic for c in rep.classes]
            order = sorted(range(len(stats)), key=lambda i: stats[i])
            ranks = [order.index(t) + 1 for t in targets]
            print(name, f"rescue_below={rescue} rescue_noise_std={noise}", f"rescued {inv.rescued}",
                  f"confidence mean {inv.confidence.mean():.3f}", f"classes {covered}/10",
                  f"DF {rep.anomaly_index:.2f}", rep.suspects, f"target rank {ranks}",
                  "stats " + " ".join(f"{v:.1f}" for v in stats), f"{rep.runtime_s:.0f} s", flush=True)


BN_MODELS = ["runs/foreign/bnsilu_clean.pt", "runs/foreign/bnsilu_troj.pt", "runs/foreign/mobile_clean.pt",
             "runs/foreign/mobile_troj.pt", "runs/zoo/resnet8_clean_s32.pt", "runs/zoo/resnet8_badnets5_mid_t3.pt"]


def inversion_bn() -> None:
    """Model inversion with the batch-norm prior (``bn_weight``; ``trojanscan.inversion``) at 0 (Eq. 1 alone, the
    default), 0.01 and 0.1, and DeepInspect's scan on each substitute set (as in ``inversion-rescue``: the 0 row equals
    ``trojanscan scan --data none``), with the target's rank among the per-class statistics."""
    import json

    from trojanscan.inversion import invert

    for path in sys.argv[2:] or BN_MODELS:
        model = load_model(path, input_shape=(1, 28, 28))
        truth = json.loads(open(path.rsplit(".", 1)[0] + ".truth.json").read())
        targets = [int(t) for t in truth.get("targets", [])]
        for bw in (0.0, 0.01, 0.1):
            inv = invert(model, seed=0, bn_weight=bw)
            covered = len(set(model.predict(inv.data.x).tolist()))
            rep = get_detector("deep_inspect").scan(model, inv.data, seed=0, progress=False)
            stats = [c.statistic for c in rep.classes]
            order = sorted(range(len(stats)), key=lambda i: stats[i])
            ranks = [order.index(t) + 1 for t in targets]
            print(path, f"bn_weight={bw}", f"bn layers {inv.bn_layers}", f"confidence mean {inv.confidence.mean():.3f}",
                  f"classes {covered}/10", f"DF {rep.anomaly_index:.2f}", rep.suspects, f"target rank {ranks}",
                  "stats " + " ".join(f"{v:.1f}" for v in stats), f"{rep.runtime_s:.0f} s", flush=True)


def few_labels() -> None:
    """Every detector on a randomly initialised tiny_cnn with 2, 3 and 4 labels (seed 0), 40 seeded noise images:
    what the median/MAD test does with few labels (docs/methods/statistics.md, "Few labels")."""
    from trojanscan.data.base import Dataset
    from trojanscan.models import Classifier, build_architecture

    for k in (2, 3, 4):
        torch.manual_seed(0)
        model = Classifier(build_architecture("tiny_cnn", (1, 28, 28), k), (1, 28, 28), k)
        x = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        data = Dataset(x, torch.arange(40) % k, [str(i) for i in range(k)], "noise")
        for name, kw in (("neuron_inspect", {}), ("neural_cleanse", {"epochs": 2}),
                         ("deep_inspect", {"steps": 50, "n_repeats": 1})):
            rep = get_detector(name, **kw).scan(model, data, progress=False)
            print(k, name, rep.verdict, f"index {rep.anomaly_index:.2f}", rep.suspects,
                  [round(c.anomaly_index, 2) for c in rep.classes], flush=True)


def softmax_head() -> None:
    """The tests' synthetic BadNets model (4x4 -> 5, seed 0, seconds to train) exported with a terminal softmax,
    loaded as logits (``outputs="logits"``: how trojanscan read such a file before session 7) and as detected
    (``"auto"``: probabilities, log p used). DeepInspect with 300 held-out images and data-free (Eq. 1 inversion)."""
    import tempfile

    from torch import nn

    from trojanscan.data.synthetic import synthetic_digits, train_test_split
    from trojanscan.inversion import invert
    from trojanscan.recipes import TrainRecipe, build_model
    from trojanscan.training import TrainConfig

    tr, te = train_test_split(synthetic_digits(3000, seed=0), 0.2, seed=0)
    built = build_model(TrainRecipe("synthetic", attack=AttackSpec("badnets", target="5", trigger_size=4),
                                    config=TrainConfig(epochs=3, batch_size=64, lr=3e-3), seed=0),
                        tr, te, progress=False, log=None)
    m = built.model
    net = nn.Sequential(m.module, nn.Softmax(dim=1)).eval()
    clean = te.subset(torch.arange(300), "clean")
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/softmax.pt"
        torch.jit.save(torch.jit.trace(net, torch.full((1, 1, 28, 28), 0.5)), path)
        for outputs in ("logits", "auto"):
            model = load_model(path, input_shape=(1, 28, 28), mean=m.mean.flatten().tolist(),
                               std=m.std.flatten().tolist(), outputs=outputs)
            inv = invert(model, seed=0)  # DeepInspect's own data-free inversion (seed 0, defaults); given as its
            # data, the scan runs exactly as its data-free path (see inversion_rescue), so the inversion runs once
            for data, label in ((clean, "300 clean images"), (inv.data, "data-free")):
                rep = get_detector("deep_inspect").scan(model, data, seed=0, progress=False)
                print(f"outputs={outputs} (read as {model.outputs})", label, f"DF {rep.anomaly_index:.2f}", rep.suspects,
                      f"inversion confidence mean {inv.confidence.mean():.3f}", flush=True)


def large_input() -> None:
    """Seconds per step of DeepInspect's three stages (inversion, auto-encoder, trigger generator) on square RGB inputs,
    a small 10-class conv net (the network's own cost is a minor part here), 5 steps each, data-free defaults
    (50 substitutes), and the default scan's total extrapolated from them (inversion 300 steps, auto-encoder 300 above
    3x64x64, generator 1000 steps x 3 repeats)."""
    import time

    from torch import nn

    from trojanscan.detectors.deep_inspect import uses_autoencoder
    from trojanscan.generator import train_autoencoder, train_trigger_generator
    from trojanscan.inversion import invert
    from trojanscan.models import Classifier

    for side in (32, 64, 96, 128):
        shape = (3, side, side)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                            nn.Linear(256, 10))
        model = Classifier(net.eval(), shape, 10)
        for p in model.parameters():
            p.requires_grad_(False)
        t = time.perf_counter()
        inv = invert(model, steps=5, seed=0)
        t_inv = (time.perf_counter() - t) / 5
        use_ae = uses_autoencoder(None, shape)
        t_ae = 0.0
        if use_ae:
            t = time.perf_counter()
            train_autoencoder(inv.data.x, steps=5, seed=0)
            t_ae = (time.perf_counter() - t) / 5
        t = time.perf_counter()
        train_trigger_generator(model, inv.data, steps=5, use_autoencoder=use_ae, ae_steps=1, seed=0)
        t_gen = (time.perf_counter() - t - (t_ae if use_ae else 0.0)) / 5
        total = 300 * t_inv + 300 * t_ae + 3 * 1000 * t_gen
        print(f"3x{side}x{side}: auto-encoder {'yes' if use_ae else 'no'}; s/step: inversion {t_inv:.3f}, "
              f"auto-encoder {t_ae:.3f}, generator {t_gen:.3f}; default data-free scan about {total / 60:.0f} min",
              flush=True)


def nes_cosine() -> None:
    from trojanscan.models import query_only

    m = _model("mnist_badnets4_t5")
    te = load_dataset("mnist", f"{DATA}/mnist", "test")
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(te), generator=g)[:64]
    x, t = te.x[idx], torch.randint(10, (64,), generator=g)

    def loss(z: torch.Tensor) -> torch.Tensor:  # DeepInspect's L_trigger (Eq. 3) towards random targets
        return -torch.log_softmax(z, 1).gather(1, t[:, None]).sum()

    _, true = m.loss_and_input_grad(x, loss)
    d = x[0].numel()
    for q in (5, 10, 20, 50, 100, 200):
        torch.manual_seed(0)
        _, est = query_only(m, samples=q).loss_and_input_grad(x, loss)
        cos = torch.nn.functional.cosine_similarity(est.flatten(1), true.flatten(1))
        ratio = est.flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1)
        print(f"q={q:3d}: cosine mean {float(cos.mean()):.3f} (min {float(cos.min()):.3f}), sqrt(q/D) "
              f"{(q / d) ** 0.5:.3f}, norm ratio {float(ratio.median()):.2f}; {1 + 2 * q} queries per image", flush=True)
    # what one query costs: the network's forward pass through torch and through its ONNX export (onnxruntime)
    import tempfile
    import time

    from trojanscan.models import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        onnx = load_model(export_onnx(m, f"{tmp}/m.onnx"))
        batch = torch.rand(2048, *m.input_shape, generator=g)
        for label, net in (("torch", m), ("onnxruntime", onnx)):
            with torch.no_grad():
                net(batch)  # warm-up
                t0 = time.perf_counter()
                for _ in range(5):
                    net(batch)
            print(f"{label}: {5 * 2048 / (time.perf_counter() - t0):.0f} images per second (one thread)", flush=True)


def null_rates() -> None:
    """False alarms per clean model under the papers' normal null (K iid N(0, 1) per-label statistics), per test:
    at c = 2, at the Sidak cutoff, and the exact per-model cutoff ``--familywise`` uses (docs/methods/statistics.md)."""
    from trojanscan import stats

    print("| K | test | P(flag) at c = 2 | Sidak cutoff | P(flag) at Sidak | per-model cutoff (--familywise) |")
    print("|---|---|---|---|---|---|")
    for k in (3, 5, 10, 20, 43, 100):
        for test in ("mad", "dmad"):
            sidak = stats.sidak_cutoff(2.0, k)
            print(f"| {k} | {test} | {stats.null_false_alarm_rate(2.0, k, test):.3f} | {sidak:.2f} | "
                  f"{stats.null_false_alarm_rate(sidak, k, test):.3f} | {stats.familywise_cutoff(2.0, k, test):.2f} |")


def large_ae() -> None:
    """DeepInspect's auto-encoder path (the default above 3x64x64) on the 3x96x96 trojaned model of
    ``make_foreign.py rgb96_troj``, with ONE seeded generator instead of the default three (the full default scan takes
    about 2 h 20 min on one CPU thread), on two threads; no data. Prints the verdict, label 5's index and rank, time."""
    import time

    from trojanscan.detectors import get_detector
    from trojanscan.models import load_model

    torch.set_num_threads(2)
    model = load_model("runs/foreign/rgb96_troj.pt", input_shape=(3, 96, 96))
    t = time.perf_counter()
    rep = get_detector("deep_inspect", n_repeats=1).scan(model, None, progress=False)
    order = sorted(rep.classes, key=lambda c: -c.anomaly_index)
    rank = next(i for i, c in enumerate(order, 1) if c.label == 5)
    print(f"auto-encoder path, 1 generator: {rep.verdict} {rep.anomaly_index:.2f} {rep.suspects}; label 5 index "
          f"{rep.classes[5].anomaly_index:.2f}, rank {rank} of 10; {time.perf_counter() - t:.0f} s")
    for note in rep.notes[:4]:
        print("  note:", note)


def ae_width() -> None:
    """DeepInspect's data-free scan with the auto-encoder on (REPEATS generators sharing one auto-encoder, default 3)
    of the 3x96x96 models of ``make_foreign.py rgb96_troj rgb96_clean``, the auto-encoder's width WIDTH (the default
    is 32), one CPU thread: ``measure_extras.py ae-width WIDTH [REPEATS] [MODEL ...]``. Per model: the verdict, label
    5's index and rank, each generator's own verdict (from the report's per-run statistics), the auto-encoder's MSE,
    the seconds per generator step and the scan's time; the report goes to
    ``runs/s22/<model>_di_ae<WIDTH>[_r<REPEATS>].json``."""
    import time
    from pathlib import Path

    import numpy as np

    from trojanscan import stats
    from trojanscan.detectors.deep_inspect import values_on_scale

    width = int(sys.argv[2])
    rest = sys.argv[3:]
    repeats = int(rest.pop(0)) if rest and rest[0].isdigit() else 3
    paths = rest or ["runs/foreign/rgb96_troj.pt", "runs/foreign/rgb96_clean.pt"]
    for path in paths:
        model = load_model(path, input_shape=(3, 96, 96))
        det = get_detector("deep_inspect", use_autoencoder=True, ae_width=width, n_repeats=repeats)
        t = time.perf_counter()
        rep = det.scan(model, None, progress=False)
        secs = time.perf_counter() - t
        out = Path("runs/s22") / f"{Path(path).stem}_di_ae{width}{'' if repeats == 3 else f'_r{repeats}'}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        rep.save_json(out)
        order = sorted(rep.classes, key=lambda c: -c.anomaly_index)
        rank = next(i for i, c in enumerate(order, 1) if c.label == 5)
        print(f"{Path(path).stem}, width {width}: {rep.verdict} {rep.anomaly_index:.2f} {rep.suspects}; label 5 "
              f"index {rep.classes[5].anomaly_index:.2f}, rank {rank} of 10; {secs:.0f} s -> {out}", flush=True)
        for r, gen in enumerate(det.generators_, 1):
            run = "" if repeats == 1 else f"_run{r}"
            hinge = np.array([c.extra[f"hinge{run}"] for c in rep.classes])
            l1 = np.array([c.extra[f"l1{run}"] for c in rep.classes])
            vals, _ = values_on_scale(hinge, l1, "raw")
            d = stats.decide(vals, cutoff=rep.cutoff, test="dmad")
            print(f"  generator {r}: {d.anomaly_index:.2f} {d.suspects}; auto-encoder MSE "
                  f"{gen.log_.autoencoder_mse:.4f}; {gen.log_.seconds / det.steps:.2f} s per step; "
                  f"final gamma2 {gen.log_.gamma2[-1]:.3g}", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    jobs = {"ni-mnist": ni_mnist, "ni-gtsrb": ni_gtsrb, "gtsrb-tar": gtsrb_tar, "di-single": di_single,
            "trojannn": trojannn, "patching": patching, "nc-gtsrb": nc_gtsrb,
            "patch-df": patch_df, "patch-rounds": patch_rounds, "patch-targets": patch_targets,
            "patch-why": patch_why, "patch-prune": patch_prune, "prune-layer": prune_layer,
            "prune-arch": prune_arch, "prune-pooled": prune_pooled, "patch-anchor": patch_anchor,
            "multi-target": multi_target,
            "di-asr": di_asr, "inversion-rescue": inversion_rescue, "inversion-noise": inversion_noise,
            "inversion-bn": inversion_bn, "few-labels": few_labels,
            "softmax-head": softmax_head, "large-input": large_input, "nes-cosine": nes_cosine,
            "null-rates": null_rates, "ni-1x1": ni_1x1, "di-repeats": di_repeats,
            "di-generators": di_generators,
            "di-substitutes": di_substitutes, "di-substitutes-zoo": di_substitutes_zoo,
            "zoo-ranks": zoo_ranks, "cifar-step": cifar_step, "large-ae": large_ae,
            "ae-width": ae_width}
    takes_models = ("ae-width", "inversion-noise", "inversion-bn",
                    "di-repeats", "di-generators", "di-substitutes", "di-substitutes-zoo", "patch-prune", "prune-arch",
                   "zoo-ranks")
    if len(sys.argv) < 2 or sys.argv[1] not in jobs or (len(sys.argv) > 2 and sys.argv[1] not in takes_models):
        sys.exit(f"usage: measure_extras.py {{{'|'.join(jobs)}}}")
    jobs[sys.argv[1]]()
