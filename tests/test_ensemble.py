"""`medconv evaluate RUN --with RUN... --out DIR`: an ensemble's figures are those of its members' mean probabilities;
members of another task or other data are refused."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import yaml
from rich.console import Console
from sklearn.metrics import roc_auc_score

from medconv.classify.evaluate import evaluate_ensemble
from medconv.classify.train import train
from medconv.config import TrainConfig
from medconv.errors import UserError

TINY = {"widths": [4, 8], "hidden": [8]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of one tiny CNN on the synthetic lesions, 1 epoch each: seeds 0 and 1, and seed 2 at 32 px
    (the generator draws other lesions and labels at another size: other data)."""
    root = tmp_path_factory.mktemp("ensemble")
    made = {}
    for name, extra in (("s0", {"seed": 0}), ("s1", {"seed": 1}), ("s2-32px", {"seed": 2, "size": 32})):
        cfg = TrainConfig(dataset="synthetic", arch="simple-cnn", model_options=TINY, epochs=1, batch_size=64,
                          deterministic=True, **extra)
        train(cfg, root / name, console=Console(file=io.StringIO()))
        made[name] = root / name
    return made


def probabilities(run, split="test") -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,), probabilities (N, 2)) from a run's predictions CSV, as its own evaluation wrote them."""
    with open(run / f"predictions_{split}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [k for k in rows[0] if k.startswith("prob_")]
    return np.array([int(r["label"]) for r in rows]), np.array([[float(r[c]) for c in columns] for r in rows])


def test_the_ensemble_scores_its_members_mean_probabilities(runs, tmp_path):
    members = [runs["s0"], runs["s1"]]
    metrics = evaluate_ensemble(members, tmp_path / "ens", split="test")
    labels, first = probabilities(members[0])
    mean = np.mean([probabilities(r)[1] for r in members], axis=0)  # the members' own test predictions
    assert metrics["n"] == len(labels) == 200
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, mean[:, 1]), abs=1e-4)  # CSVs hold 6 decimals
    assert metrics["acc"] == pytest.approx(np.mean(mean.argmax(axis=1) == labels), abs=1 / 200)
    own = [json.loads((r / "metrics_test.json").read_text())["auc"] for r in members]
    assert all(abs(metrics["auc"] - a) > 1e-4 for a in own)  # not any one member's figure
    assert [m["run"] for m in metrics["members"]] == [str(r) for r in members]
    written = json.loads((tmp_path / "ens" / "metrics_test.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    ens_labels, ens_probs = probabilities(tmp_path / "ens")
    assert np.array_equal(ens_labels, labels) and np.allclose(ens_probs, mean, atol=2e-6)
    assert (tmp_path / "ens" / "plots" / "roc_test.png").stat().st_size > 5000


def test_members_of_another_task_or_other_data_are_refused(runs, tmp_path, data_root):
    with pytest.raises(UserError, match="at least 2 runs"):
        evaluate_ensemble([runs["s0"]], tmp_path / "one")
    with pytest.raises(UserError, match="named twice"):
        evaluate_ensemble([runs["s0"], runs["s1"], runs["s0"]], tmp_path / "twice")
    with pytest.raises(UserError, match="one of the members"):
        evaluate_ensemble([runs["s0"], runs["s1"]], runs["s1"])
    other = tmp_path / "breast"  # BreastMNIST's first 64/32/32 images: other classes
    with np.load(data_root / "medmnist" / "breastmnist.npz") as npz:
        arrays = {k: npz[k][:64 if k.startswith("train") else 32] for k in npz.files}
    (tmp_path / "root").mkdir()
    np.savez(tmp_path / "root" / "breastmnist.npz", **arrays)
    train(TrainConfig(dataset="breastmnist", data_root=str(tmp_path / "root"), arch="simple-cnn", model_options=TINY,
                      epochs=1), other, console=Console(file=io.StringIO()))
    with pytest.raises(UserError, match="task and classes"):
        evaluate_ensemble([runs["s0"], other], tmp_path / "mixed")
    with pytest.raises(UserError, match="other labels, or another order"):
        evaluate_ensemble([runs["s0"], runs["s1"], runs["s2-32px"]], tmp_path / "other-data")
    assert not (tmp_path / "mixed").exists() and not (tmp_path / "other-data").exists()


def test_the_evaluate_verb_takes_members_with_an_out_folder(runs, tmp_path, cli):
    done = cli("evaluate", runs["s0"], "--with", runs["s1"], "--out", tmp_path / "ens", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads((tmp_path / "ens" / "metrics_test.json").read_text())
    assert len(json.loads(done.stdout)["members"]) == 2
    page = (tmp_path / "ens" / "report.html").read_text()  # the ensemble's page, with its members side by side
    assert "Ensemble: the mean" in page and str(runs["s1"]) in page
    for argv, words in ((("--out", tmp_path / "x"), "--with"), (("--with", runs["s1"]), "--out"),
                        (("--with", runs["s1"], "--out", tmp_path / "y", "--tta", "flip"), "--tta"),
                        (("--with", runs["s1"], "--out", tmp_path / "y", "--level", "coarse"), "--level")):
        refused = cli("evaluate", runs["s0"], *argv)
        assert refused.returncode == 2 and words in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_train_with_an_ensembles_file_trains_each_member_then_scores_their_mean(tmp_path, cli):
    """`medconv train --config ENSEMBLE.yaml --out DIR`: the members (a file of their own and inline settings)
    trained into DIR/NAME with the options given over their settings, the ensemble scored into DIR; a second
    command refuses the folder without --resume and, with it, keeps the finished members and resumes the other."""
    common = {"dataset": "synthetic", "arch": "simple-cnn", "model_options": TINY, "epochs": 1, "batch_size": 64,
              "deterministic": True}
    (tmp_path / "first.yaml").write_text(json.dumps({**common, "lr": 0.003}))  # JSON is YAML
    (tmp_path / "ens.yaml").write_text(json.dumps({"members": {"a": "first.yaml", "b": {**common, "seed": 1}}}))
    out = tmp_path / "ens"
    done = cli("train", "--config", tmp_path / "ens.yaml", "--out", out, "--seed", "3")
    assert done.returncode == 0, done.stderr
    seeds = {name: yaml.safe_load((out / name / "config.yaml").read_text()) for name in ("a", "b")}
    assert (seeds["a"]["seed"], seeds["b"]["seed"], seeds["a"]["lr"]) == (3, 3, 0.003)  # --seed over both files
    for split in ("val", "test"):
        labels, _ = probabilities(out / "a", split)
        mean = np.mean([probabilities(out / name, split)[1] for name in ("a", "b")], axis=0)
        metrics = json.loads((out / f"metrics_{split}.json").read_text())
        assert metrics["auc"] == pytest.approx(roc_auc_score(labels, mean[:, 1]), abs=1e-4)
        assert [m["run"] for m in metrics["members"]] == [str(out / "a"), str(out / "b")]
    summary = json.loads((out / "ensemble.json").read_text())
    assert summary["test"]["auc"] == metrics["auc"] and set(summary["members"]) == {"a", "b"}
    pages = [out / "report.html", out / "a" / "report.html", out / "b" / "report.html"]  # members side by side, each
    assert all(p.stat().st_size > 10000 for p in pages) and "report not written" not in done.stderr
    page = pages[0].read_text()
    assert "Ensemble: the mean" in page and f"{metrics['auc']:.4g}" in page and "Side by side" in page

    refused = cli("train", "--config", tmp_path / "ens.yaml", "--out", out)
    assert refused.returncode == 2 and "--resume" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    kept = (out / "a" / "metrics.json").stat().st_mtime_ns
    (out / "b" / "metrics.json").unlink()  # b as if stopped before its last evaluation
    again = cli("train", "--config", tmp_path / "ens.yaml", "--out", out, "--resume", "--seed", "3")  # as trained
    assert again.returncode == 0, again.stderr
    assert "a: finished, kept" in again.stderr and "b: resuming" in again.stderr
    assert (out / "a" / "metrics.json").stat().st_mtime_ns == kept and (out / "b" / "metrics.json").exists()
    other = cli("train", "--config", tmp_path / "ens.yaml", "--out", out, "--resume", "--seed", "3", "--precision",
                "bf16")  # finished members keep the precision they trained in (the next member could need another)
    assert other.returncode == 0 and other.stderr.count("finished, kept") == 2, other.stderr
    assert "trained in fp32, not bf16" in other.stderr and (out / "a" / "metrics.json").stat().st_mtime_ns == kept
    (tmp_path / "first.yaml").write_text(json.dumps({**common, "lr": 0.01}))  # the file changed since a was trained
    changed = cli("train", "--config", tmp_path / "ens.yaml", "--out", out, "--resume", "--seed", "3")
    assert changed.returncode == 2 and "member a" in changed.stderr and "lr 0.003 there, 0.01 now" in changed.stderr


def test_an_ensembles_file_must_name_two_members_and_nothing_else(tmp_path):
    from medconv.config import load_config, load_members
    from medconv.segment.config import SegmentConfig

    for text, words in (("members: {a: {epochs: 1}}", "at least two"), ("members: {a: {}, b: {}}\nepochs: 3",
                        "`members` alone"), ("members: {../a: {}, b: {}}", "folder name"),
                        ("members: {a: missing.yaml, b: {}}", "file not found"), ("members: {a: 3, b: {}}",
                                                                                   "config file's name or")):
        (tmp_path / "e.yaml").write_text(text)
        with pytest.raises(UserError, match=words):
            load_members(tmp_path / "e.yaml")
    (tmp_path / "one.yaml").write_text("epochs: 2")
    assert load_members(tmp_path / "one.yaml") is None  # the config of one run
    (tmp_path / "e.yaml").write_text("members: {a: {}, b: {}}")
    with pytest.raises(UserError, match="only `medconv train --config` takes one"):  # e.g. segment train --config
        load_config(tmp_path / "e.yaml", SegmentConfig)
    (tmp_path / "nested.yaml").write_text("members: {a: e.yaml, b: {}}")
    with pytest.raises(UserError, match="not as a member"):
        load_members(tmp_path / "nested.yaml")
