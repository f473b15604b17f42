import pytest
import torch
import torch.nn.functional as F

from cnn_core.model import (
    MNIST_MEAN,
    MNIST_STD,
    MnistCNN,
    architecture_dot,
    conv_output_size,
    layer_table,
    neuron_counts,
    parameter_split,
    predict_proba,
)

pytestmark = pytest.mark.numeric  # compares floats from torch kernels: `make test` reruns it on the float32 AVX2 path


def test_exact_parameter_counts():
    assert parameter_split(MnistCNN()) == {"total": 799078, "conv": 9568, "fc": 789510, "batchnorm": 0}
    assert parameter_split(MnistCNN(batchnorm=True)) == {"total": 800206, "conv": 9568, "fc": 789510, "batchnorm": 1128}
    frozen = MnistCNN().requires_grad_(False)  # how the app caches models for attacks
    assert parameter_split(frozen)["total"] == 799078


def test_exact_neuron_counts_both_conventions():
    for bn in (False, True):
        assert neuron_counts(MnistCNN(bn)) == {"conv": 31360, "fc": 510, "total": 31870, "incl_input_and_pooling": 40494}


def test_output_size_formula():
    assert conv_output_size(28, 3, 1, 1) == 28
    assert conv_output_size(28, 2, 0, 2) == 14
    assert conv_output_size(14, 2, 0, 2) == 7
    assert conv_output_size(32, 5, 0, 1) == 28


def test_layer_table_rows():
    t = layer_table(MnistCNN()).set_index("layer")
    assert list(t.index) == ["input", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2"]
    assert t.loc["pool2", "output shape"] == "32×7×7" and t.loc["flatten", "output shape"] == "1568"
    assert t.loc["conv1", "output-size arithmetic"] == "(28 − 3 + 2·1) / 1 + 1 = 28"
    assert t.loc["fc1", "parameters"] == 784500 and t.loc["fc2", "parameters"] == 5010
    assert t["parameters"].sum() == 799078
    bn = layer_table(MnistCNN(True)).set_index("layer")
    assert bn.loc["bn3", "parameters"] == 1000 and bn["parameters"].sum() == 800206


def test_forward_normalizes_pixel_inputs_itself():
    torch.manual_seed(0)
    m = MnistCNN().eval()
    x = torch.rand(4, 1, 28, 28)
    z = (x - MNIST_MEAN) / MNIST_STD
    h = m.pool(F.relu(m.conv2(m.pool(F.relu(m.conv1(z))))))
    expected = m.fc2(F.relu(m.fc1(h.flatten(1))))
    # the mean and std as float32 buffers vs Python floats: z rounds once differently, then the same kernels
    assert torch.allclose(m(x), expected, atol=1e-6)
    assert set(m.state_dict()) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                   "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def test_stages_are_every_intermediate_result_with_batchnorm_before_each_relu():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    for batchnorm in (False, True):
        m = MnistCNN(batchnorm).eval()
        bn = {k: getattr(m, k) if batchnorm else torch.nn.Identity() for k in ("bn1", "bn2", "bn3")}
        if batchnorm:  # statistics and scales that change the numbers (fresh ones are the identity)
            for b in bn.values():
                b.running_mean.uniform_(-1, 1)
                b.running_var.uniform_(0.5, 2)
                b.weight.data.uniform_(0.5, 2)
        z = (x - MNIST_MEAN) / MNIST_STD
        expected = {"conv1": bn["bn1"](m.conv1(z))}
        expected["relu1"] = F.relu(expected["conv1"])
        expected["pool1"] = F.max_pool2d(expected["relu1"], 2)
        expected["conv2"] = bn["bn2"](m.conv2(expected["pool1"]))
        expected["relu2"] = F.relu(expected["conv2"])
        expected["pool2"] = F.max_pool2d(expected["relu2"], 2)
        expected["fc1_pre"] = bn["bn3"](m.fc1(expected["pool2"].flatten(1)))
        expected["fc1"] = F.relu(expected["fc1_pre"])
        expected["logits"] = m.fc2(expected["fc1"])
        with torch.no_grad():
            stages = m.stages(x)
            assert list(stages) == list(expected) and torch.equal(m(x), stages["logits"])  # the same forward: exact
            # z rounds once differently (float32 buffers vs Python floats), then the same kernels: float32 rounding
            assert all(torch.allclose(stages[k], v, atol=1e-5) for k, v in expected.items()), batchnorm
        assert [s.shape[1:] for s in stages.values()] == [(32, 28, 28)] * 2 + [(32, 14, 14)] * 3 + [(32, 7, 7)] + [(500,)] * 2 + [(10,)]


def test_seeded_init_does_not_depend_on_the_global_rng():
    torch.manual_seed(1)  # another thread may be using the global RNG: it must not matter
    a = MnistCNN(generator=torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    b = MnistCNN(generator=torch.Generator().manual_seed(5))
    c = MnistCNN(generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())  # same seed, same draws: exact
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    bound = 1 / 9**0.5  # conv1 fan_in = 1·3·3
    assert a.conv1.weight.abs().max().item() <= bound and a.conv1.bias.abs().max().item() <= bound


def test_predict_proba_is_a_distribution_and_keeps_eval_mode():
    m = MnistCNN(True).eval()
    p = predict_proba(m, torch.rand(5, 1, 28, 28))
    assert p.shape == (5, 10) and torch.allclose(p.sum(1), torch.ones(5)) and not m.training  # 10 float32 roundings ≪ 1e-5


class _SeesItsInputs(torch.nn.Module):
    """Its one parameter lives on the meta device (a stand-in for a GPU here); it records where its inputs are and
    answers on the CPU."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.empty(1, device="meta"))
        self.devices = []

    def forward(self, x):
        self.devices.append(x.device.type)
        return torch.zeros(len(x), 10)


def test_predict_proba_sends_each_batch_to_the_models_device_and_answers_on_the_cpu():
    model = _SeesItsInputs()
    p = predict_proba(model, torch.rand(5, 1, 28, 28), batch_size=2)
    # softmax of zeros is exp(0) / 10, which rounds to float32's 0.1: exact
    assert model.devices == ["meta"] * 3 and p.device.type == "cpu" and torch.equal(p, torch.full((5, 10), 0.1))


def test_architecture_diagram_has_one_box_per_layer_and_shapes_on_edges():
    dot = architecture_dot(MnistCNN(batchnorm=True))
    assert dot.count("->") == 6 and dot.count("[label=") == 13  # 7 boxes, 6 edges
    assert 'n1 [label="conv1\\n320 params\\n+ BatchNorm\\n+ ReLU"]' in dot
    assert 'n4 -> n5 [label=" 1568"]' in dot


def test_layer_table_counts_neurons_only_on_conv_and_fc_rows():
    """Per row, not only the totals: ReLU, pooling, flatten, BatchNorm and input rows hold no neurons."""
    neurons = {"conv1": 32 * 28 * 28, "conv2": 32 * 14 * 14, "fc1": 500, "fc2": 10}
    units = {**neurons, "input": 784, "pool1": 32 * 14 * 14, "pool2": 32 * 7 * 7}
    for bn in (False, True):
        t = layer_table(MnistCNN(bn)).set_index("layer")
        assert t["neurons"].to_dict() == {name: neurons.get(name, 0) for name in t.index}
        assert t["units incl. input & pooling"].to_dict() == {name: units.get(name, 0) for name in t.index}
        assert t["neurons"].sum() == 31870 and t["units incl. input & pooling"].sum() == 40494


def test_seeded_init_is_pytorchs_default_init_with_bias_bound_one_over_sqrt_fan_in():
    """Drawn from a generator, the weights and biases are exactly what PyTorch's own default init draws from the
    global RNG with the same seed; the biases fill U(−1/√fan_in, 1/√fan_in)."""
    torch.manual_seed(5)
    reference = [torch.nn.Conv2d(1, 32, 3, 1, 1), torch.nn.Conv2d(32, 32, 3, 1, 1), torch.nn.Linear(1568, 500),
                 torch.nn.Linear(500, 10)]
    m = MnistCNN(generator=torch.Generator().manual_seed(5))
    for ref, name, fan_in in zip(reference, ("conv1", "conv2", "fc1", "fc2"), (9, 288, 1568, 500), strict=True):
        layer = getattr(m, name)
        # the same draws from the same seed: exact
        assert torch.equal(layer.weight, ref.weight), f"{name}.weight is not PyTorch's default init"
        assert torch.equal(layer.bias, ref.bias), f"{name}.bias is not PyTorch's default init"
        bound = 1 / fan_in**0.5
        assert -bound <= layer.bias.min().item() and layer.bias.max().item() <= bound, name
    fc1_bound = 1 / 1568**0.5  # 500 draws reach both ends of the interval
    assert m.fc1.bias.min().item() < -0.99 * fc1_bound and m.fc1.bias.max().item() > 0.99 * fc1_bound


def test_architecture_diagram_is_exactly_this_dot():
    """The Overview page renders this text as is: every box, label and edge."""
    assert architecture_dot(MnistCNN()) == "\n".join([
        "digraph cnn {",
        "  rankdir=TB; node [shape=box, style=rounded, fontsize=16]; edge [fontsize=16];",
        '  n0 [label="input"];',
        '  n1 [label="conv1\\n320 params\\n+ ReLU"];',
        '  n2 [label="pool1"];',
        '  n3 [label="conv2\\n9,248 params\\n+ ReLU"];',
        '  n4 [label="pool2\\n+ flatten"];',
        '  n5 [label="fc1\\n784,500 params\\n+ ReLU"];',
        '  n6 [label="fc2\\n5,010 params"];',
        '  n0 -> n1 [label=" 1×28×28"];',
        '  n1 -> n2 [label=" 32×28×28"];',
        '  n2 -> n3 [label=" 32×14×14"];',
        '  n3 -> n4 [label=" 32×14×14"];',
        '  n4 -> n5 [label=" 1568"];',
        '  n5 -> n6 [label=" 500"];',
        "}",
    ])


def test_layer_table_is_exactly_what_the_overview_page_shows():
    """Every text cell of the BatchNorm model's table, and the parameters per row."""
    t = layer_table(MnistCNN(batchnorm=True))
    assert list(t.columns) == ["layer", "type", "input shape", "output shape", "kernel / stride / padding",
                               "output-size arithmetic", "parameters", "neurons", "units incl. input & pooling"]
    assert t.iloc[:, :7].values.tolist() == [
        ["input", "input", "", "1×28×28", "", "", 0],
        ["conv1", "Conv2d", "1×28×28", "32×28×28", "3×3 / 1 / 1", "(28 − 3 + 2·1) / 1 + 1 = 28", 320],
        ["bn1", "BatchNorm2d", "32×28×28", "32×28×28", "", "", 64],
        ["relu1", "ReLU", "32×28×28", "32×28×28", "", "", 0],
        ["pool1", "MaxPool2d", "32×28×28", "32×14×14", "2×2 / 2 / 0", "(28 − 2 + 2·0) / 2 + 1 = 14", 0],
        ["conv2", "Conv2d", "32×14×14", "32×14×14", "3×3 / 1 / 1", "(14 − 3 + 2·1) / 1 + 1 = 14", 9248],
        ["bn2", "BatchNorm2d", "32×14×14", "32×14×14", "", "", 64],
        ["relu2", "ReLU", "32×14×14", "32×14×14", "", "", 0],
        ["pool2", "MaxPool2d", "32×14×14", "32×7×7", "2×2 / 2 / 0", "(14 − 2 + 2·0) / 2 + 1 = 7", 0],
        ["flatten", "flatten", "32×7×7", "1568", "", "", 0],
        ["fc1", "Linear", "1568", "500", "", "", 784500],
        ["bn3", "BatchNorm1d", "500", "500", "", "", 1000],
        ["relu3", "ReLU", "500", "500", "", "", 0],
        ["fc2", "Linear", "500", "10", "", "", 5010],
    ]


def test_layer_table_runs_on_the_models_device():
    """Its shape-measuring forward must be made on the model's device (meta stands in for a GPU here: mixing it
    with CPU tensors fails the same way)."""
    assert layer_table(MnistCNN(True).to("meta")).equals(layer_table(MnistCNN(True)))


def test_for_inference_freezes_in_place_keeping_the_weights_and_the_outputs():
    from cnn_core.model import for_inference

    model = MnistCNN(batchnorm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 1, 28, 28)
    expected = model.eval()(x)
    assert for_inference(model) is model and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a layout change keeps every value
    # channels_last (oneDNN) sums in another order: ≤ 1e-6 measured (docs/measurements.md), atol 1e-5 for slack
    assert torch.allclose(model(x), expected, atol=1e-5) and torch.equal(model(x).argmax(1), expected.argmax(1))
