import numpy as np

from convfix.parity import Tolerance, compare_outputs, compare_tensor


def test_matching_floats_pass_and_report_the_error():
    result = compare_tensor(
        "y", np.array([1.0, 2.0], np.float32), np.array([1.00001, 2.0], np.float32), Tolerance()
    )
    assert result.ok
    assert 0 < result.max_abs_err < 2e-5


def test_values_beyond_tolerance_fail():
    result = compare_tensor("y", np.array([1.0], np.float32), np.array([1.01], np.float32), Tolerance())
    assert not result.ok
    assert "beyond tolerance" in result.problems[0]


def test_nonfinite_values_must_agree_exactly():
    exp = np.array([np.nan, np.inf, -np.inf], np.float32)
    assert compare_tensor("y", exp, exp.copy(), Tolerance()).ok
    flipped = np.array([np.nan, -np.inf, -np.inf], np.float32)
    assert not compare_tensor("y", exp, flipped, Tolerance()).ok
    assert not compare_tensor("y", exp, np.array([0.0, np.inf, -np.inf], np.float32), Tolerance()).ok


def test_shape_and_dtype_mismatch_fail_even_if_broadcastable():
    exp = np.zeros((2, 3), np.float32)
    assert not compare_tensor("y", exp, np.zeros((1, 3), np.float32), Tolerance()).ok
    assert not compare_tensor("y", exp, np.zeros((3, 2), np.float32), Tolerance()).ok
    assert not compare_tensor("y", exp, np.zeros((2, 3), np.float64), Tolerance()).ok


def test_integers_compare_exactly():
    assert not compare_tensor("i", np.array([1, 2]), np.array([1, 3]), Tolerance(1.0, 1.0)).ok


def test_outputs_compare_per_probe_and_flag_missing_names():
    exp = [{"y": np.ones(2, np.float32)}, {"y": np.zeros(2, np.float32)}]
    result = compare_outputs(
        exp, [{"y": np.ones(2, np.float32)}, {"z": np.zeros(2, np.float32)}], Tolerance()
    )
    assert not result.ok
    assert "missing" in result.problems[0]
    assert len(result.per_probe_max_abs_err) == 2


def test_float16_is_compared_at_its_own_resolution_only():
    expected = np.array([0.5, 2.0], np.float16)
    one_ulp_off = np.array([0.5 + 2**-11, 2.0], np.float16)  # 4.9e-4 at 0.5: a rel error of 9.8e-4
    assert compare_tensor("h", expected, one_ulp_off, Tolerance()).ok
    assert not compare_tensor(
        "f", expected.astype(np.float32), one_ulp_off.astype(np.float32), Tolerance()
    ).ok
    assert not compare_tensor("h", expected, np.array([0.51, 2.0], np.float16), Tolerance()).ok
