"""NonMaxSuppression as a fixed number of unrolled greedy steps over sorted boxes.

onnx2tf fails on a NonMaxSuppression whose thresholds or max_output_boxes_per_class are run-time
values (it compares the Keras tensor with "": `Expected float32 passed to parameter 'y' of op
'NotEqual'`): every node-suite case fails. Constant ones convert, but a max_output_boxes_per_class of
0 (or an absent one) selects every box instead of none (seen: 48 rows for ONNX's 0), a divergence.

With the number of boxes B static, the selection is spelled out in ops onnx2tf converts, every
intermediate of rank 1 or 2 (rows are the N·C (batch, class) pairs): TopK sorts each row's scores
(descending, lower box index first on ties, which is onnxruntime's order too); the sorted boxes are
gathered from the flattened boxes; onnxruntime's suppression test (min/max corners, or centers ± half
sizes; no suppression without a positive intersection, areas and union; IoU > iou_threshold strictly)
is computed for every ordered pair of ranks as a [rows, B·B] mask; B unrolled steps then keep rank i
while it is still alive (score > score_threshold strictly) and kill every box it suppresses; a
cumulative count (a MatMul with a triangle of ones) caps each row at max_output_boxes_per_class; NonZero
over the flattened mask lists (batch, class, rank) in onnxruntime's order, and the rank is mapped back
to the box index. Absent inputs take the spec's defaults (no boxes, IoU threshold 0, no score
threshold). Exact. Batches, classes and boxes must be static; more than 128 boxes (unrolled steps) or a
pair mask over 2^22 elements is refused: a detector with thousands of candidate boxes would become a
huge graph.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, optional_input, standard_node
from convfix.rules import Rule, RuleContext

MAX_BOXES = 128
MAX_PAIR_ELEMENTS = 1 << 22


def _sorted_coordinates(b: Emitter, boxes: ir.Value, flat_index: ir.Value) -> list[ir.Value]:
    """The four coordinates of the boxes flat_index [rows, B] points at in boxes seen as [N·B, 4]."""
    flat = b.op("Reshape", [boxes, b.ints([-1])])
    four = b.op("Mul", [flat_index, b.ints([4])])
    return [b.op("Gather", [flat, b.op("Add", [four, b.ints([k])])]) for k in range(4)]


def _extents(b: Emitter, coordinates: list[ir.Value], center_point_box: int) -> list[ir.Value]:
    """xmin, xmax, ymin, ymax as onnxruntime derives them from each box format."""
    if center_point_box == 0:  # [y1, x1, y2, x2], corners in either order
        y1, x1, y2, x2 = coordinates
        return [b.op("Min", [x1, x2]), b.op("Max", [x1, x2]), b.op("Min", [y1, y2]), b.op("Max", [y1, y2])]
    x, y, width, height = coordinates  # centers and sizes
    two = b.const(np.array(2, np.float32))
    half_width, half_height = b.op("Div", [width, two]), b.op("Div", [height, two])
    return [
        b.op("Sub", [x, half_width]),
        b.op("Add", [x, half_width]),
        b.op("Sub", [y, half_height]),
        b.op("Add", [y, half_height]),
    ]


def _suppression(b: Emitter, extents: list[ir.Value], count: int, iou_threshold: ir.Value) -> ir.Value:
    """[rows, B·B] bool: element i·B + j tells whether the box of rank i suppresses that of rank j."""
    first = b.ints(np.repeat(np.arange(count), count).tolist())
    second = b.ints(np.tile(np.arange(count), count).tolist())

    def pairs(value: ir.Value) -> tuple[ir.Value, ir.Value]:
        return b.op("Gather", [value, first], axis=1), b.op("Gather", [value, second], axis=1)

    xmin, xmax, ymin, ymax = extents
    zero = b.const(np.array(0, np.float32))
    area = b.op("Mul", [b.op("Sub", [xmax, xmin]), b.op("Sub", [ymax, ymin])])
    area_i, area_j = pairs(area)
    overlap_min_x, overlap_max_x = (b.op(op, list(pairs(v))) for op, v in (("Max", xmin), ("Min", xmax)))
    overlap_min_y, overlap_max_y = (b.op(op, list(pairs(v))) for op, v in (("Max", ymin), ("Min", ymax)))
    intersection = b.op(
        "Mul",
        [b.op("Sub", [overlap_max_x, overlap_min_x]), b.op("Sub", [overlap_max_y, overlap_min_y])],
    )
    union = b.op("Sub", [b.op("Add", [area_i, area_j]), intersection])
    conditions = [
        b.op("Greater", [overlap_max_x, overlap_min_x]),
        b.op("Greater", [overlap_max_y, overlap_min_y]),
        b.op("Greater", [intersection, zero]),
        b.op("Greater", [area_i, zero]),
        b.op("Greater", [area_j, zero]),
        b.op("Greater", [union, zero]),
        b.op("Greater", [b.op("Div", [intersection, union]), iou_threshold]),
    ]
    result = conditions[0]
    for condition in conditions[1:]:
        result = b.op("And", [result, condition])
    return result


def _greedy(b: Emitter, alive: ir.Value, suppresses: ir.Value, count: int) -> ir.Value:
    """[rows, B] bool: the ranks greedy NMS keeps. Step i keeps rank i if nothing kept before it killed
    it, then kills what it suppresses (ranks up to i are never read again, so they need no mask)."""
    axes = b.ints([1])
    kept = []
    for i in range(count):
        keep = b.op("Slice", [alive, b.ints([i]), b.ints([i + 1]), axes])
        kept.append(keep)
        if i + 1 < count:
            row = b.op("Slice", [suppresses, b.ints([i * count]), b.ints([(i + 1) * count]), axes])
            alive = b.op("And", [alive, b.op("Not", [b.op("And", [keep, row])])])
    return b.op("Concat", kept, axis=1) if count > 1 else kept[0]


def nms_unrolled(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "NonMaxSuppression")
    if node is None:
        return "not a NonMaxSuppression node"
    boxes, scores = node.inputs[0], node.inputs[1]
    if scores.shape is None or len(scores.shape) != 3 or not all(isinstance(d, int) for d in scores.shape):
        return "the scores' shape (batches, classes, boxes) is not static"
    batches, classes, count = scores.shape
    if batches * classes * count == 0:
        return "no boxes or no (batch, class) rows"
    if count > MAX_BOXES:
        return f"{count} boxes: more than the {MAX_BOXES} greedy steps this rule unrolls"
    rows = batches * classes
    if rows * count * count > MAX_PAIR_ELEMENTS:
        return f"the pairwise suppression mask would hold {rows * count * count} elements (limit 2^22)"
    center_point_box = node.attributes.get_int("center_point_box", 0)
    if center_point_box not in (0, 1):
        return f"center_point_box={center_point_box}"
    limit, iou_threshold, score_threshold = (optional_input(node, i) for i in (2, 3, 4))

    b = Emitter(model, node)
    row_scores = b.op("Reshape", [scores, b.ints([rows, count])])
    sorted_scores, box_of_rank = b.tape.op_multi_out(
        "TopK", [row_scores, b.ints([count])], {"axis": 1}, num_outputs=2, name=f"{node.name}_TopK"
    )
    first_box_of_row = np.repeat(np.arange(batches, dtype=np.int64) * count, classes)[:, None]
    flat_index = b.op("Add", [box_of_rank, b.const(first_box_of_row)])
    extents = _extents(b, _sorted_coordinates(b, boxes, flat_index), center_point_box)
    if iou_threshold is None:
        iou_threshold = b.const(np.array(0, np.float32))
    suppresses = _suppression(b, extents, count, iou_threshold)
    if score_threshold is None:
        alive = b.const(np.ones((rows, count), np.bool_))
    else:
        alive = b.op("Greater", [sorted_scores, score_threshold])
    kept = _greedy(b, alive, suppresses, count)

    if limit is None:
        limit = b.ints([0])
    triangle = b.const(np.triu(np.ones((count, count), np.float32)))
    running = b.op("MatMul", [b.op("Cast", [kept], to=ir.DataType.FLOAT), triangle])
    within = b.op("Not", [b.op("Greater", [running, b.op("Cast", [limit], to=ir.DataType.FLOAT)])])
    selected = b.op("Reshape", [b.op("And", [kept, within]), b.ints([-1])])
    position = b.op("Reshape", [b.op("NonZero", [selected]), b.ints([-1])])
    columns = [
        b.ints(np.repeat(np.arange(batches), classes * count).tolist()),
        b.ints(np.tile(np.repeat(np.arange(classes), count), batches).tolist()),
        b.op("Reshape", [box_of_rank, b.ints([-1])]),
    ]
    columns = [b.with_axes("Unsqueeze", b.op("Gather", [c, position]), [1]) for c in columns]
    b.replace([b.op("Concat", columns, axis=1)])
    return None


RULES = [
    Rule(
        "nms-unrolled",
        ("conversion-error", "divergence"),
        nms_unrolled,
        "NonMaxSuppression over a static number of boxes (at most 128) as TopK, a pairwise IoU mask "
        "and unrolled greedy steps, the selection listed by NonZero",
        ops=("NonMaxSuppression",),
    ),
]
