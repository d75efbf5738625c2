"""ATen nodes are evaluated only for allowlisted pure functions whose arguments fit the schema."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_torch

from convfix.runtimes import aten

needs_torch()


def test_an_allowlisted_function_is_evaluated_through_the_overload_its_arguments_fit():
    x = np.array([[3.0, 1.0, 2.0], [0.0, -1.0, 5.0]], np.float32)
    values, indices = aten.call("median", "", [x, np.array(1, np.int64), np.array(False)], {})
    np.testing.assert_array_equal(values, [2.0, 0.0])
    np.testing.assert_array_equal(indices, [2, 0])


def test_constant_inputs_are_taken_as_the_python_scalars_the_exporter_wrote():
    """torch.quantile(x, 0.3) exports q as a float64 0-d constant: the Tensor overload rejects it
    beside a float32 x; held as a constant, it goes to the scalar overload, as in eager torch."""
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    q, dim, keep, how = np.array(0.3), np.array(0, np.int64), np.array(False), np.array(b"linear")
    with pytest.raises(RuntimeError, match="same dtype"):
        aten.call("quantile", "", [x, q, dim, keep, how], {})
    (value,) = aten.call("quantile", "", [x, q, dim, keep, how], {}, constants=frozenset({1, 2, 3, 4}))
    np.testing.assert_allclose(value, np.quantile(x, 0.3), rtol=1e-6)


def test_a_sequence_input_is_a_list_of_tensors():
    """torch.block_diag(a, b) exports its tensors as one sequence input (Tensor[] in the schema)."""
    a, b = np.ones((1, 2), np.float32), np.full((2, 1), 2.0, np.float32)
    (value,) = aten.call("block_diag", "", [[a, b]], {})
    np.testing.assert_array_equal(value, [[1, 1, 0], [0, 0, 2], [0, 0, 2]])


@pytest.mark.parametrize(
    ("operator", "inputs", "attributes", "reason"),
    [
        ("from_file", [], {"filename": b"/etc/passwd"}, "not on convfix's allowlist"),
        ("empty", [np.array([2**40], np.int64)], {}, "not on convfix's allowlist"),
        ("no_such_op", [], {}, "not on convfix's allowlist"),
        ("bincount", [np.arange(3), None, np.array(2**40)], {}, "beyond convfix's cap"),
        ("histc", [np.ones(3, np.float32), np.array(2**30)], {}, "beyond convfix's cap"),
        (
            "linalg_qr",
            [np.eye(2, dtype=np.float32), np.array(["/tmp/x"], dtype=object)],
            {},
            "not one convfix",
        ),
        ("rot90", [np.ones((2, 2), np.float32)], {"filename": b"x"}, "no arguments of it"),
        ("rot90", [np.ones((2, 2), np.float32), np.ones((2, 2))], {}, "must be one value"),
    ],
)
def test_anything_else_is_refused_with_its_reason_never_called(operator, inputs, attributes, reason):
    with pytest.raises(aten.Refused, match=reason):
        aten.call(operator, "", inputs, attributes)
