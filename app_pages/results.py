"""Results: any saved run (shipped or trained) in detail, runs compared, trained runs deleted."""

import numpy as np
import pandas as pd
import streamlit as st

from app_pages.common import SCENE, chart, comparison_dataframe, explain
from app_pages.digits import pick_digits, prediction_grid
from app_pages.loaders import require_data, run_store, saved_model
from cnn_core.compare import misclassified
from cnn_core.data import to_float, training_digits
from cnn_core.model import predict_proba
from cnn_core.plots import confusion_figure, digit_grid, run_colors, training_curves_figure
from cnn_core.report import build_report
from cnn_core.store import LECTURE_PAIR, CheckpointError, RunStore
from cnn_core.training import evaluate

st.title("Results and comparison")
data = require_data()
store = run_store()
listing = store.list_runs()
runs = [r for r in listing if "error" not in r]
for r in (r for r in listing if "error" in r):
    st.warning(f"Run `{r['name']}` is damaged and is left out: {r['error']}")
if not runs:
    st.error("No saved runs yet. Train one on the Train page, or restore the shipped ones (`git checkout -- checkpoints`).")
    st.stop()
names = [r["name"] for r in runs]
label = {r["name"]: f"{r['name']}{' (shipped)' if r['shipped'] else ''}" for r in runs}


# Test-set numbers come from the saved weights in the standard memory layout, exactly as training tested them (the
# pages' shared models are channels_last, which rounds differently: cnn_core.model.for_inference).
@st.cache_data(max_entries=16, show_spinner="Classifying the 10,000 test digits…")
def test_probabilities(root: str, name: str, mtime: float, _data) -> np.ndarray:
    """Class probabilities of a saved run (``mtime`` keys its weights) on the 10,000 test digits of ``_data``: stored
    in the run after the first time."""
    store = RunStore(root)
    return store.test_probabilities(name, lambda: predict_proba(store.load_model(name)[0].eval(),
                                                                to_float(_data.test_images)).numpy())


@st.cache_data(max_entries=16, show_spinner="Testing the stopped run's best weights on the 10,000 test digits…")
def test_results(root: str, name: str, mtime: float, _data) -> dict:
    """Test numbers of a run saved as stopped (it has none of its own)."""
    return evaluate(RunStore(root).load_model(name)[0].eval(), _data.test_images, _data.test_labels)


st.header("One run")
first = st.session_state.get("model_a")  # the model chooser's A, when it is a saved run
name = st.selectbox("Run", names, index=names.index(first) if first in names else names.index("baseline") if "baseline" in names
                    else 0, format_func=label.get,
                    key="results_run", bind=SCENE)
try:
    model, info = saved_model(name, store.mtime(name))
except (CheckpointError, OSError) as exc:
    st.error(f"Run `{name}` could not be loaded: {exc}")
    st.stop()
res, cfg = info["results"] or test_results(str(store.root), name, store.mtime(name), data), info["config"]
if info.get("status") == "stopped":
    st.warning(f"This run was stopped at step {info['stopped_at_step']:,}: it holds its best weights up to then, tested "
               "here on the 10,000 test digits.", icon=":material/stop_circle:")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Test accuracy", f"{100 * res['accuracy']:.2f}%")
c2.metric("Test loss", f"{res['loss']:.4f}")
c3.metric("Top-5 accuracy", f"{100 * res['top5_accuracy']:.2f}%")
best = info["best"]
c4.metric("Best epoch (by validation)", f"{best['epoch']} of {cfg['epochs']}",
          help=f"Its weights are the run's: validation accuracy {100 * best['val_accuracy']:.2f}%"
               + (f" at step {best['step']:,}" if "step" in best else ""))
st.caption(f"{'BatchNorm' if cfg['batchnorm'] else 'No BatchNorm'} · {cfg['optimizer']} lr {cfg['lr']:g} · "
           f"batch {cfg['batch_size']} · {cfg['schedule']} schedule · weight decay {cfg['weight_decay']:g} · "
           f"{training_digits(cfg['train_subset'], cfg['val_fraction']):,} training digits{' with random shifts' if cfg.get('augment') else ''} · "
           f"seed {cfg['seed']}")

left, right = st.columns([3, 2])
with left:
    chart(confusion_figure(res["confusion"]), key="confusion")
per_class = pd.DataFrame(res["per_class"])
right.markdown("**Per class** (precision: of the digits predicted as this class, how many were; "
               "recall: of this class's digits, how many were found)")
right.dataframe(per_class, hide_index=True, column_config={
    k: st.column_config.NumberColumn(format="%.4f") for k in ("precision", "recall", "f1")})
explain("The confusion matrix counts the 10,000 test digits by true class (row) and predicted class (column): the "
        "diagonal holds the right answers, every other cell a kind of mistake (e.g. 4s taken for 9s). The table turns "
        "each class's row and column into precision, recall and F1.")

st.subheader("Predictions")
if digits := pick_digits(data, 10, "results"):
    prediction_grid(model, digits, key="results")

st.subheader("Misclassified digits, most confident mistakes first")
probs = test_probabilities(str(store.root), name, store.mtime(name), data)
idx, titles = misclassified(probs, data.test_labels.numpy(), limit=18)
n_wrong = int((probs.argmax(1) != data.test_labels.numpy()).sum())
st.markdown(f"**{n_wrong}** of 10,000 test digits are misclassified; the {len(idx)} shown are the ones the model was "
            "surest about. Many are ambiguous even for people.")
if len(idx):
    chart(digit_grid(data.test_images[idx].numpy(), titles, [True] * len(idx)), key="wrong_grid")

st.header("Compare runs")
default = [n for n in LECTURE_PAIR if n in names]
chosen = st.multiselect("Runs to compare", names, default=default, format_func=label.get, key="results_compare",
                        bind=SCENE)
info = {r["name"]: r for r in runs}
tested = [n for n in chosen if info[n]["results"]]
pair = (tuple(sorted(tested, key=lambda n: info[n]["config"]["batchnorm"]))  # (without, with) BatchNorm
        if len(tested) == 2 and len({info[n]["config"]["batchnorm"] for n in tested}) == 2 else LECTURE_PAIR)
st.download_button(f"Assignment report: {pair[0]} and {pair[1]} (HTML)", icon=":material/description:",
                   data=lambda: build_report(RunStore(store.root), data, pair)[0],  # made on click, ~5–10 s
                   file_name=f"cnn-lab-report-{pair[0]}-{pair[1]}.html", mime="text/html", on_click="ignore",
                   disabled=not all(store.exists(n) for n in pair), key="report",
                   help="One self-contained HTML file (figures embedded, opens offline) answering every question of the "
                        "assignment in order with these runs' numbers: `python -m cnn_core report` writes the same.")
if chosen:
    histories = [store.load_history(n) for n in chosen]
    comparison_dataframe(histories)
    chart(training_curves_figure(histories, run_colors(chosen)), key="cmp_curves")
    explain("One row per run and its curves over optimisation steps: training loss (faint, with a centred average), "
            "validation loss and accuracy at the run's validation points. Seconds per epoch depend on the machine and "
            "on what else it was doing: compare runs trained together.")

st.header("Delete a trained run")
trained = [r["name"] for r in runs if not r["shipped"]]
if not trained:
    st.caption("No trained runs to delete (shipped runs cannot be deleted here).")
else:
    victim = st.selectbox("Trained run", trained, key="delete_run")
    sure = st.checkbox(f"Yes, delete `{victim}` for good", key="delete_confirm")
    if st.button("Delete", icon=":material/delete:", disabled=not sure):
        try:
            store.delete(victim)
        except (CheckpointError, PermissionError, OSError) as exc:
            st.error(f"Not deleted: {exc}")
        else:
            st.session_state.pop("delete_confirm", None)
            st.toast(f"Deleted {victim}")
            st.rerun()
