"""AppTest: the Convolution page renders and shows that im2col reproduces conv1."""

PAGE = "convolution.py"  # the `at` fixture (conftest) runs it


def largest_difference(at) -> float:
    [metric] = [m for m in at.metric if m.label.startswith("Largest |im2col product")]
    return float(metric.value)


def test_renders_with_the_formulas_and_an_im2col_product_equal_to_conv1(at):
    assert not at.exception
    assert [h.value for h in at.header] == ["Output size and the sliding window", "im2col: conv1 as one matrix product",
                                            "The backward pass, in unfold/fold form"]
    latex = [x.value for x in at.latex]
    assert r"\left\lfloor \frac{28 - 3 + 2 \cdot 1}{1} \right\rfloor + 1 = 28" in latex[0]
    assert r"\left\lfloor \frac{28 - 2 + 2 \cdot 0}{2} \right\rfloor + 1 = 14" in latex[1]  # the 2×2 pool after it
    assert 0 <= largest_difference(at) < 1e-5  # 9 products and a bias in another order (matmul): float32 ~1e-6
    assert [e.label for e in at.expander] == ["What am I seeing?"] * 3
    assert at.slider(key="conv_pos").value == 14 * 28 + 14  # opens on the centre: output (14, 14), window from (13, 13)
    assert "window at row 13, col 13" in at.get("plotly_chart")[0].proto.spec


def test_batchnorm_model_too(at):
    at.selectbox(key="conv_model_a").set_value("batchnorm").run()
    assert not at.exception and 0 <= largest_difference(at) < 1e-5  # the same float32 rounding as above


def test_the_window_follows_the_settings_and_a_window_that_does_not_fit_is_explained(at):
    at.slider(key="conv_k").set_value(5)
    at.slider(key="conv_p").set_value(0)
    at.slider(key="conv_s").set_value(2).run()
    assert r"\frac{28 - 5 + 2 \cdot 0}{2} \right\rfloor + 1 = 12" in at.latex[0].value
    assert "S = 2 does not divide W − K + 2P = 23" in at.caption[0].value
    at.slider(key="conv_pos").set_value(143).run()  # the last of 12×12 positions
    assert "window at row 22, col 22" in at.get("plotly_chart")[0].proto.spec
    at.selectbox(key="conv_w").set_value(7).run()  # 7×7: output (7 − 5)/2 + 1 = 2, the position moves inside it
    assert not at.exception and at.slider(key="conv_pos").value == 3
    at.slider(key="conv_k").set_value(7)
    at.selectbox(key="conv_pool").set_value(2).run()  # 1×1 after the conv: no room for the pool
    assert "does not fit in 1×1" in at.error[0].value and not at.exception
