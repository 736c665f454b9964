"""The reproduction suite: its plans per scale, its verdicts, skipped papers, and the smoke
scale of CARTL and the transfer study end to end on real data (those of RiFT and TWINS run
from the GPU bundle in tests/benchmarks/test_device_bundle.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

import lit_robust.methods as methods

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reproduce", REPO / "benchmarks" / "reproduce.py")
reproduce = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = reproduce
spec.loader.exec_module(reproduce)
import reproduce_plans as plans  # noqa: E402  (beside reproduce.py, which puts it on the path)

# What a scale may change: sizes, and where the outputs go.
SIZE_OPTIONS = {
    "--data.init_args.samples_per_class", "--data.init_args.val_size",
    "--data.init_args.val_samples_per_class", "--data.init_args.test_samples_per_class",
    "--data.init_args.test_first_n",
    "--data.init_args.batch_size", "--data.init_args.num_workers", "--trainer.max_epochs",
    "--model.init_args.milestones", "--model.init_args.attack.init_args.steps",
    "--model.init_args.evaluators", "--model.init_args.mrc_samples",
    "--model.init_args.mrc_epochs", "--model.init_args.mrc_batch_size",
    "--model.init_args.mrc_attack.init_args.steps",
    "--model.init_args.interpolation_attack.init_args.steps", "--model.init_args.alphas",
    "--model.init_args.pretrained", "--model.init_args.head_only_epochs",
    # TWINS at smoke and gpu scale keeps the head fitted first (recorded in its setting)
    "--model.init_args.reset_head",
    # the transfer study's gpu scale: a larger backbone and resolution, GPU speed settings
    "--model.init_args.backbone", "--model.init_args.backbone_kwargs",
    "--model.init_args.channels_last", "--data.init_args.image_size", "--trainer.precision",
}
RESULT_FIELDS = {"paper", "scale", "command", "date", "status", "title", "setting", "metrics",
                 "test_images", "seconds", "runs", "ours", "standard_error", "paper_numbers",
                 "directions", "comparison_markdown", "fit", "failed_sanity_checks",
                 "learning_check", "learning_check_enforced", "per_image"}
DIRECTION_FIELDS = {"text", "metric", "ours", "baseline", "expected", "tolerance_points",
                    "paper_delta", "ours_value", "baseline_value", "delta_points", "se_points",
                    "paired_ci_points", "unpaired_ci_points", "test", "p_value", "only_ours",
                    "only_baseline", "reason", "verdict"}


def options(args: tuple[str, ...]) -> dict[str, str]:
    """``{--option: value}`` of a run's arguments (the subcommand and flags dropped)."""
    pairs = {}
    for index, arg in enumerate(args):
        if arg.startswith("--") and index + 1 < len(args):
            pairs[arg if arg != "--config" else f"--config{index}"] = args[index + 1]
    return pairs


@pytest.mark.parametrize("paper", list(plans.PLANS))
def test_scales_change_only_sizes(paper: str, tmp_path: Path) -> None:
    build = plans.PLANS[paper]
    planned = {scale: build(scale, tmp_path, tmp_path / "models") for scale in reproduce.SCALES}
    for scale in ("cpu", "gpu"):
        base_runs = {run.name: options(run.args) for run in planned["smoke"].runs}
        methods = set(plans.TWINS_SIZES[scale]["methods"]) if paper == "twins" else set()
        for run in planned[scale].runs:
            if run.name not in base_runs:  # a source model only the larger scales train, or
                assert not run.reported or run.name in methods  # TWINS' TRADES pair (cpu)
                continue
            changed = {key for key in options(run.args).keys() | base_runs[run.name].keys()
                       if options(run.args).get(key) != base_runs[run.name].get(key)}
            assert changed <= SIZE_OPTIONS, f"{paper} {scale} {run.name} changes {changed}"
    configs = [arg for run in planned["cpu"].runs for arg in run.args if arg.endswith(".yaml")]
    assert configs and all(Path(config).is_file() for config in configs)


def test_rift_starts_from_the_shared_model_and_twins_gpu_from_a_fitted_head(
        tmp_path: Path) -> None:
    for scale in ("cpu", "gpu"):
        rift = plans.rift(scale, tmp_path, tmp_path / "models")
        assert [run.name for run in rift.runs] == ["base", "rift"]
        assert options(rift.runs[1].args)["--model.init_args.pretrained"] == str(
            tmp_path / "models" / plans.SHARED_MODEL)
    twins = plans.twins("gpu", tmp_path, tmp_path / "models")
    assert [(run.name, run.reported, run.needs) for run in twins.runs] == [
        ("head", False, ()), ("at_ft", True, ("head",)), ("twins_at", True, ("head",))]
    assert options(twins.runs[0].args)["--model.init_args.pretrained"] == str(
        tmp_path / "models" / plans.SHARED_MODEL)
    for run in twins.runs[1:]:
        assert options(run.args)["--model.init_args.pretrained"] == str(
            tmp_path / "head" / "lit_robust" / "version_0" / "checkpoints" / "last.ckpt")
        assert options(run.args)["--model.init_args.reset_head"] == "false"
    assert "head fitted first" in twins.setting
    assert [claim.ours for claim in twins.claims] == ["twins_at"] * 3
    assert len(plans.twins("cpu", tmp_path, tmp_path / "models").claims) == 6



def test_rift_cpu_runs_the_papers_three_measures_and_gpu_adds_autoattack(
        tmp_path: Path) -> None:
    """The cpu scale leaves AutoAttack out (to stay within 40 minutes on 2 cores) and with it
    its claim and column; the gpu scale runs it."""
    kinds = {}
    for scale in ("cpu", "gpu"):
        rift = plans.rift(scale, tmp_path, tmp_path / "models")
        for run in rift.runs:
            evaluators = json.loads(options(run.args)["--model.init_args.evaluators"])
            kinds[scale, run.name] = [e["class_path"].rsplit(".", 1)[1] for e in evaluators]
        kinds[scale] = ({claim.metric for claim in rift.claims},
                        [metric.split("=")[0] for metric in rift.metrics])
    assert kinds["cpu", "base"] == kinds["cpu", "rift"] == [
        "CleanAccuracy", "PGDEvaluator", "CorruptionRobustness"]
    assert kinds["cpu"] == ({"clean", "pgd10", "corruption"}, ["clean", "pgd10", "corruption"])
    assert kinds["gpu", "base"] == kinds["gpu", "rift"] == [
        "CleanAccuracy", "PGDEvaluator", "AutoAttackEvaluator", "CorruptionRobustness"]
    assert kinds["gpu"] == ({"clean", "pgd10", "autoattack", "corruption"},
                            ["clean", "pgd10", "autoattack", "corruption"])


def test_verdicts() -> None:
    assert reproduce.verdict(3.1, 1.5, "up") == "reproduced"
    assert reproduce.verdict(2.9, 1.5, "up") == "within noise"
    assert reproduce.verdict(-3.1, 1.5, "up") == "not reproduced"
    assert reproduce.verdict(-0.4, 1.0, "kept", tolerance=0.5) == "reproduced"
    assert reproduce.verdict(-2.4, 1.0, "kept", tolerance=0.5) == "within noise"
    assert reproduce.verdict(-2.6, 1.0, "kept", tolerance=0.5) == "not reproduced"
    assert reproduce.standard_error(0.3, 100) == pytest.approx(math.sqrt(0.21 / 100))


def check_skipped(paper: str, names: list[str], tmp_path: Path) -> None:
    result = reproduce.main(["--paper", paper, "--scale", "smoke", "--results-dir",
                             str(tmp_path), "--work-dir", str(tmp_path / "work")])
    written = json.loads((tmp_path / f"reproduce_{paper}_smoke.json").read_text())
    assert written == result
    assert set(written) == {"paper", "scale", "command", "date", "status", "message"}
    assert written["status"] == "skipped" and "no numbers are reported" in written["message"]
    markdown = (tmp_path / f"reproduce_{paper}_smoke.md").read_text()
    for name in names:
        assert f"lit_robust.methods.{name}" in written["message"] and name in markdown
    assert f"Skipped: {paper} needs" in markdown
    assert not (tmp_path / "work").exists()


def test_a_paper_whose_method_is_missing_is_skipped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delattr(methods, "NEFTTransfer", raising=False)
    assert reproduce.missing_pieces("cartl")[0] == "lit_robust.methods.NEFTTransfer"
    check_skipped("cartl", ["NEFTTransfer"], tmp_path)


def test_the_study_is_skipped_without_simclr(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delattr(methods, "SimCLR")
    check_skipped("study", ["SimCLR"], tmp_path)


def test_the_study_reuses_the_transfer_study_runs(tmp_path: Path) -> None:
    import transfer_study  # beside reproduce.py, which puts it on the path

    for scale in reproduce.SCALES:
        planned = plans.study(scale, tmp_path, tmp_path / "models")
        expected = transfer_study.runs(scale, tmp_path, ["random", "st", "simclr"], ["at", "cr"])
        assert [(run.name, list(run.args)) for run in planned.runs] == expected
        assert [run.name for run in planned.runs if not run.reported] == ["pre_st", "pre_simclr"]
    claims = {(claim.ours, claim.baseline, claim.metric) for claim in planned.claims}
    # the CR rows are certified models: SA of the smoothed classifier and RA-CT
    assert claims == {(f"{source}__{finetune}", f"random__{finetune}", metric)
                      for source in ("st", "simclr") for finetune in ("at", "cr")
                      for metric in ({"at": ("SA", "RA-WB"),
                                      "cr": ("SA (smoothed)", "RA-CT")}[finetune])}
    assert {"SA (smoothed)=smoothing_sigma0.5/certified_acc@0",
            "RA-CT=smoothing_sigma0.5/certified_acc@0.5"} <= set(planned.metrics)
    assert all(claim.expected == "up" for claim in planned.claims)


def check_result(result: dict, tmp_path: Path, paper: str, runs: list[str], images: int,
                 reported: list[str] | None = None, clean: str = "clean") -> None:
    written = json.loads((tmp_path / f"reproduce_{paper}_smoke.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert set(written) == RESULT_FIELDS and written["status"] == "ran"
    assert written["test_images"] == images
    assert list(written["runs"]) == runs and list(written["ours"]) == (
        reported or [run for run in runs if run != "source"])
    for run, values in written["ours"].items():
        report = json.loads((tmp_path / "work" / run / "report.json").read_text())["metrics"]
        assert values[clean] == round(100 * report["clean_acc"], 2)
        assert written["failed_sanity_checks"][run] == sorted(
            key for key, value in report.items() if key.startswith("sanity/") and value == 0.0)
        for metric, value in values.items():
            p = value / 100  # a certification's metric: on its own (fewer) images
            n = reproduce.measured_images(report, written["metrics"][metric]) or images
            assert written["standard_error"][run][metric] == pytest.approx(
                100 * math.sqrt(p * (1 - p) / n), abs=0.02)
    # smoke: the learning check is recorded for every claim's baseline, not enforced
    assert written["learning_check_enforced"] is False
    assert set(written["learning_check"]) == {row["baseline"] for row in written["directions"]}
    for row in written["directions"]:
        assert set(row) == DIRECTION_FIELDS
        assert row["verdict"] in {"reproduced", "not reproduced", "within noise"}
        assert row["delta_points"] == pytest.approx(
            100 * (row["ours_value"] - row["baseline_value"]), abs=0.01)
        # every evaluated metric kept its per-image results: the claims are paired
        assert row["test"] in {"exact McNemar", "paired bootstrap"}
        low, high = row["paired_ci_points"]
        assert low <= row["delta_points"] <= high
    assert set(written["per_image"]) == set(written["ours"])
    markdown = (tmp_path / f"reproduce_{paper}_smoke.md").read_text()
    assert "Smoke scale" in markdown and "## Directions" in markdown
    for row in written["directions"]:
        assert f"| {row['text']} | {row['delta_points']:+.2f} [" in markdown


@pytest.mark.parametrize("scale", ["cpu", "gpu"])
def test_every_run_of_the_larger_scales_parses(scale: str, tmp_path: Path, models_root: Path,
                                               monkeypatch) -> None:
    from lit_robust.main import cli

    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    for build in plans.PLANS.values():
        for run in build(scale, tmp_path, models_root).runs:
            args = list(run.args[1:])
            if "--test_after_fit" in args:  # a fit-only option: drop it and its value
                del args[args.index("--test_after_fit"):args.index("--test_after_fit") + 2]
            parsed = cli(args, run=False)
            epochs = options(run.args).get("--trainer.max_epochs")
            if epochs is not None:
                assert parsed.trainer.max_epochs == int(epochs)
            if run.reported:
                assert Path(parsed.model.report_dir) == tmp_path / run.name


@pytest.mark.slow
def test_cartl_smoke_end_to_end(tmp_path: Path) -> None:
    cartl = reproduce.main(["--paper", "cartl", "--scale", "smoke", "--results-dir",
                            str(tmp_path), "--work-dir", str(tmp_path / "work")])
    check_result(cartl, tmp_path, "cartl", list(plans.CARTL_RUNS), images=43)
    assert [row["ours"] for row in cartl["directions"]] == ["neft_k3"] * 3
    # smoke: PGD-2 with the 2/255 step of PGD-10
    assert cartl["metrics"]["pgd20"] == "robust_acc/pgd2_linf_eps0.03137_step0.007843"


@pytest.mark.slow
def test_study_smoke_end_to_end(tmp_path: Path) -> None:
    study = reproduce.main(["--paper", "study", "--scale", "smoke", "--results-dir",
                            str(tmp_path), "--work-dir", str(tmp_path / "work")])
    fine_tunings = [f"{source}__{finetune}" for source in ("random", "st", "simclr")
                    for finetune in ("at", "cr")]
    # the claims' baselines run first, then the pre-trainings and the other fine-tunings
    check_result(study, tmp_path, "study", ["random__at", "random__cr", "pre_st", "pre_simclr",
                                            *fine_tunings[2:]], images=43,
                 reported=fine_tunings, clean="SA")
    assert study["runs"]["pre_st"]["test_images"] == 0  # pre-trainings are not tested
    assert set(study["ours"]["simclr__cr"]) == {"SA", "RA-WB", "RA-BB", "SA (smoothed)",
                                                "RA-CT"}
    assert study["metrics"]["RA-WB"] == "robust_acc/ra_wb_apgd_ce_l2_eps0.5"
    assert study["paper_numbers"]["values"] == {}
    assert "GTSRB is not among them" in study["paper_numbers"]["setting"]
    assert [(row["ours"], row["baseline"]) for row in study["directions"]][:2] == [
        ("st__at", "random__at")] * 2
    assert len(study["directions"]) == 8


def test_a_baseline_that_cannot_learn_stops_the_paper(tmp_path: Path, monkeypatch) -> None:
    """The first step of a plan runs the baseline and checks that it learns: a tiny CNN whose
    learning rate is 1e-9 keeps its initial, near-constant predictions (10 % on the 10
    held-out CIFAR-10 images, under 2 x chance), so the paper stops as uninformative at this
    scale and the compared run never starts."""
    work = tmp_path / "work"

    def run(name: str, lr: str) -> plans.Run:
        return plans.Run(name, (
            "fit", "--test_after_fit", "true",
            "--config", str(REPO / "tests/conf/tiny_model.yaml"),
            "--config", str(REPO / "tests/conf/tiny_cifar10.yaml"),
            "--model.init_args.lr", lr, "--model.init_args.report_dir", str(work / name),
            "--trainer.max_epochs", "1", *plans._common(work, name, 0)))

    paper = plans.Paper(
        title="cannot learn", setting="a tiny CNN at lr 1e-9", metrics=["clean=clean_acc"],
        runs=[run("method", "0.1"), run("baseline", "1e-9")], baseline="baseline",
        claims=[plans.Claim("method above baseline", "clean", "method", "baseline", "up")],
        paper_setting="none", paper_values={})
    monkeypatch.setitem(reproduce.PLANS, "rift", lambda scale, work, models: paper)
    result = reproduce.reproduce("rift", "cpu", tmp_path, work, tmp_path / "models")
    assert result["status"] == "uninformative"
    assert result["message"].startswith("uninformative at this scale; no claim is judged")
    check = result["learning_check"]["baseline"]
    assert not check["learns"] and check["classes"] == 10 and check["images"] == 10
    assert list(result["runs"]) == ["baseline"] and not (work / "method").exists()
    markdown = (tmp_path / "reproduce_rift_cpu.md").read_text()
    assert "**Uninformative at this scale; no claim is judged" in markdown


def test_a_certification_metric_is_measured_on_its_own_images() -> None:
    """The standard error of a certified accuracy counts the certified images, not the test
    set (a certification covers every skip-th image only)."""
    metrics = {"clean_acc": 0.5, "smoothing_sigma0.5/certified_acc@0.5": 0.25,
               "smoothing_sigma0.5/num_images": 50.0}
    assert reproduce.measured_images(metrics, "smoothing_sigma0.5/certified_acc@0.5") == 50
    assert reproduce.measured_images(metrics, "clean_acc") is None
