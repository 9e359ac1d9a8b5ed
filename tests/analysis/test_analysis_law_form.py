"""The law's form (with a floor E, or a pure power law) is chosen by the stated criterion, on data from either form."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.families import fit_family, fit_summary
from analysis.law_form import FLOOR_FORM, PURE_FORM, aic, choose_law, fit_pure_power_law
from analysis.powerlaw import PURE, fit_power_law

SIZES = np.geomspace(1e5, 3e6, 5)  # 1.5 decades of compute per token, as on a 2-core machine
SEEDS = 3


def synthetic(law, c: np.ndarray, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.repeat(c, SEEDS)
    return x, law(x) * np.exp(rng.normal(0, noise, x.size))


def test_law_form_pure_power_law_is_recovered_exactly() -> None:
    c = np.geomspace(1e5, 1e7, 6)
    fit = fit_pure_power_law(c, 40.0 * c**-0.12)
    assert fit.converged and fit.form == PURE
    assert fit.params["E"] == 0.0
    assert np.isclose(fit.params["A"], 40.0, rtol=1e-4) and np.isclose(fit.params["b"], 0.12, rtol=1e-4)
    assert np.isclose(float(fit.inverse(40.0 * 3e6**-0.12)), 3e6, rtol=1e-3)  # inversion works with E = 0


def test_law_form_pure_data_choose_the_pure_law_with_an_interval() -> None:
    x, y = synthetic(lambda c: 40.0 * c**-0.12, SIZES, noise=0.01)
    choice = choose_law(x, y)
    assert choice.fit.form == PURE and choice.form == PURE_FORM, choice.why
    assert choice.why.startswith("pure power law")
    if choice.floor.converged:  # the criterion: the pure law's AIC is not above the floor form's
        assert aic(choice.pure, x, y) <= aic(choice.floor, x, y)
    else:
        assert choice.floor.reason.startswith("log E stuck at its lower bound")
    # Through the family fit the pure law gets a bootstrap interval that holds the true exponent.
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(x.size)], "flops_per_new_token": x, "retained_loss": y,
                         "model": np.repeat([f"s{i}" for i in range(SIZES.size)], SEEDS), "eval_fingerprint": "f"})
    ff = fit_family("no replay (model size)", runs, "retained_loss", stratum="model", n_boot=60)
    assert ff.fit.form == PURE and ff.boot is not None and ff.boot.has_interval, ff.boot and ff.boot.reason
    lo, hi = ff.boot.ci()["b"]
    assert lo < 0.12 < hi
    assert ff.boot.ci()["E"] == (0.0, 0.0)
    summary = fit_summary(ff)
    assert summary["form"] == PURE_FORM and summary["law_choice"] == ff.law and summary["converged"]


def test_law_form_floor_data_choose_the_floor_by_aic() -> None:
    x, y = synthetic(lambda c: 2.0 + 250.0 * c**-0.3, np.geomspace(1e5, 1e8, 6), noise=0.003)
    choice = choose_law(x, y)
    assert choice.fit.form == "power_law" and choice.form == FLOOR_FORM, choice.why
    assert choice.pure.converged and aic(choice.floor, x, y) < aic(choice.pure, x, y)
    assert "lower AIC" in choice.why
    assert 1.8 < choice.fit.params["E"] < 2.2


def test_law_form_floor_at_its_lower_bound_falls_back_to_the_pure_law() -> None:
    # Data whose log-log slope steepens with C: any floor E > 0 would flatten the curve, so the floor form runs E to
    # its lower bound, which alone is no fit.
    c = np.geomspace(1e5, 3e6, 5)
    y = 40.0 * c**-0.12 * np.exp(-0.01 * np.log(c / c[0]) ** 2)
    floor = fit_power_law(c, y)
    assert not floor.converged and floor.reason.startswith("log E stuck at its lower bound")
    choice = choose_law(c, y)
    assert choice.fit.form == PURE and "ran to its lower bound" in choice.why


def test_law_form_neither_fits_keeps_the_floor_reason() -> None:
    choice = choose_law(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))  # rising: no power law at all
    assert not choice.fit.converged and choice.why.startswith("no law")


def test_law_form_on_run_directories(collection, tmp_path) -> None:
    """Run directories written from a known law: the standard sweep has a floor (E = 2.3), a pure-law sweep none."""
    import synthetic_runs as sr

    from analysis.collect import collect
    from analysis.families import NO_REPLAY, no_replay_runs

    def no_replay_fit(runs):
        return fit_family(NO_REPLAY, no_replay_runs(runs[runs["usable"]]), "retained_loss", stratum="model", n_boot=0)

    floor = no_replay_fit(collection.runs)
    assert floor.fit.form == "power_law" and "lower AIC" in floor.law
    pure_law = {m: 40.0 * (6 * n) ** -0.12 for m, n in sr.MODELS.items()}  # retained loss of each size, no floor
    sr.write_sweep(tmp_path, [sr.Spec(model=m, seed=s, losses=(0.8 * loss, loss)) for m, loss in pure_law.items()
                              for s in range(3)])
    pure = no_replay_fit(collect([tmp_path], progress=False).runs)
    assert pure.fit.form == PURE and pure.law.startswith("pure power law"), pure.law
    assert abs(pure.fit.params["b"] - 0.12) < 0.01
