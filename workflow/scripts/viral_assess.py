"""Evaluate one viral method (the fp32 CNN, a compressed model, or a baseline) in the summary's
one unit: in-class test records at full length and in fragments, out-of-class test records, the
open-set threshold calibrated on the validation records (quantscan.apps.viral.evaluation)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import time

from quantscan.apps.viral import classify, dataset, evaluation, openset
from quantscan.apps.viral.fasta import ValidationRules
from quantscan.atomic import write_text
from quantscan.scripting import run
from quantscan.summary import metrics_json


def engine_for(smk):
    method = smk.wildcards.method
    if smk.params.kind == "cnn":
        return classify.load_engine(
            smk.input.model, threads=smk.threads, batch_size=smk.params.batch_windows
        )
    train = dataset.read_split(smk.input.train)
    if smk.params.kind == "kmer":
        return evaluation.KmerEngine(train, int(method.removeprefix("kmer")))
    return evaluation.LengthEngine(train)


def main(smk, log):
    start = time.perf_counter()
    classes, outputs = list(smk.params.classes), list(smk.params.outputs)
    osc, ev = smk.params.openset, smk.params.evaluate
    engine = engine_for(smk)
    log.info("%s: %s engine", smk.wildcards.method, engine.kind)
    rule = openset.OpenSetRule(
        len(classes),
        background=len(outputs) > len(classes),
        score=osc["score"],
        threshold=None,  # thresholds are calibrated here, per score
        min_length=osc["min_length"],
    )
    # the k-mer Mahalanobis detector (the same for every method: fitted on the training split)
    detector = evaluation.mahalanobis_detector(
        dataset.read_split(smk.input.train), len(classes), osc.get("mahalanobis")
    )
    options = classify.ClassifyOptions(
        stride=smk.params.stride,
        combine=smk.params.combine,
        batch_windows=smk.params.batch_windows,
        rules=ValidationRules(**smk.params.validation),
        openset=rule,
        detector=detector,
    )
    seed = smk.params.seed
    frags, most = ev["fragments"], ev["fragments_per_record"]
    val = dataset.read_split(smk.input.val)
    test = dataset.read_split(smk.input.test)
    pieces = {
        "val": evaluation.split_pieces(val, len(classes), frags, most, seed, "val"),
        "test": evaluation.split_pieces(test, len(classes), frags, most, seed, "test"),
        "ood": evaluation.ood_pieces(smk.input.ood),
    }
    rows = {}
    for name, ps in pieces.items():
        t0 = time.perf_counter()
        rows[name] = evaluation.score_pieces(engine, ps, outputs, options)
        bases = sum(len(p.sequence) for p in ps)
        log.info("%s: %d pieces, %d bp in %.1f s", name, len(ps), bases, time.perf_counter() - t0)
    result = evaluation.assess(
        rows["val"],
        pieces["val"],
        rows["test"],
        pieces["test"],
        rows["ood"],
        pieces["ood"],
        classes,
        background=osc["background"],
        score=osc["score"],
        fpr=osc["fpr"],
    )
    result.update(
        scenario=smk.wildcards.dataset,
        method=smk.wildcards.method,
        engine=engine.kind,
        seconds=round(time.perf_counter() - start, 2),
    )
    write_text(smk.output.evaluation, metrics_json(result))
    h = result["headline"]
    log.info(
        "%s (%s): records %.4f closed / %.4f open; out-of-class rejected %.4f (%s)",
        smk.wildcards.method,
        h["strategy"],
        h["full_accuracy"],
        h["full_open_accuracy"],
        h["reject_all"],
        ", ".join(f"{c} {h[f'reject_{c}']:.3f}" for c in result["categories"]),
    )
    for s in result["strategies"]:
        log.info(
            "  %-22s in-class open accuracy %.4f, out-of-class rejected %.4f",
            s["strategy"],
            s["full_open_accuracy"],
            s["reject_all"],
        )


run(main, snakemake)
