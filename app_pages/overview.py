"""Overview: the network's numbers and its predictions on random test digits."""

import streamlit as st

from app_pages.chooser import choose_models, side_by_side
from app_pages.common import explain, layer_dataframe
from app_pages.digits import pick_digits, prediction_grid
from app_pages.loaders import require_data
from cnn_core.model import neuron_counts, parameter_split

st.title("CNN Lab — a convolutional network on MNIST")
st.markdown(
    "The assignment's network: **conv1** (32 filters 3×3, stride 1, padding 1) → ReLU → 2×2 max-pool → "
    "**conv2** (32 filters 3×3) → ReLU → 2×2 max-pool → **fc1** (500) → ReLU → **fc2** (10) → softmax. "
    "Inputs are pixel intensities in [0, 1]; the model normalizes them itself."
)

data = require_data()
chosen = choose_models("overview_model", st.columns([3, 2])[0])

st.header("Predictions")
if digits := pick_digits(data, 10, "overview"):
    side_by_side(chosen, lambda c: prediction_grid(c.model, digits, key=f"overview_{c.slot}", test_accuracy=c.test_accuracy))
    explain("Each digit with its true class, the class the model predicts and its probability; red when wrong. "
            "The test-set accuracy under each model's name is over all 10,000 test digits, so a handful of random "
            "digits will usually all be right — reshuffle, or pick one class, to go looking for mistakes.")

model = chosen[0].model
st.header("Layer by layer" + (f" — model A, {chosen[0].label}" if len(chosen) > 1 else ""))
params, neurons = parameter_split(model), neuron_counts(model)
c1, c2, c3 = st.columns(3)
c1.metric("Parameters", f"{params['total']:,}",
          help="Weights and biases" + (" (incl. BatchNorm γ, β)" if model.batchnorm else ""))
c1.caption(f"conv {params['conv']:,} · fully connected {params['fc']:,}"
           + (f" · BatchNorm {params['batchnorm']:,}" if model.batchnorm else ""))
c2.metric("Neurons (conv + FC outputs)", f"{neurons['total']:,}")
c2.caption(f"conv {neurons['conv']:,} · fully connected {neurons['fc']:,}")
c3.metric("Units incl. input & pooling", f"{neurons['incl_input_and_pooling']:,}")
c3.caption("also counts the 784 input pixels and the pooling outputs")
layer_dataframe(model)
st.caption("Output size of a convolution or pooling window: (W − K + 2P) / S + 1. "
           "'neurons' counts units that compute a weighted sum (conv and FC outputs); the last column also "
           "counts the input pixels and pooling outputs — both conventions appear in answers to the assignment.")
