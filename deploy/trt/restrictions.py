"""Parser restrictions decidable from one ONNX node, per TensorRT version (vitdeploy.trt.support
holds the op tables and prose notes these restrictions come from).

Each restriction is a tiny predicate keyed by op and by the TensorRT versions it applies to;
predicates see the node through the NodeView protocol (vitdeploy.trt.check builds it from an onnx
NodeProto). Stdlib only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vitdeploy.trt.support import ParserSupport, parser_support


class NodeView:
    """What a restriction predicate may ask of a node (duck-typed; vitdeploy.trt.check._Node implements it)."""

    op_type: str
    name: str  # node name, or a stand-in naming its first output when the node has none
    inputs: Sequence[str]  # "" for an omitted optional input
    outputs: Sequence[str]
    attrs: dict  # attribute name -> python value (strings decoded)

    def is_constant(self, tensor: str) -> bool: ...  # an initializer or the output of a Constant node

    def constant(self, tensor: str) -> list | None: ...  # its values, flattened; None if not constant

    def shape(self, tensor: str) -> list | None: ...  # dims (int, or None when unknown); None: rank unknown

    def dtype(self, tensor: str) -> str | None: ...  # TensorProto name ("FLOAT", "INT64"), None if unknown


def version_key(version: str) -> tuple[int, ...]:
    """"10.12" -> (10, 12): TensorRT versions compared numerically."""
    return tuple(int(p) for p in version.split("."))


@dataclass(frozen=True)
class Restriction:
    """One statically checkable parser restriction on an op, for versions ``since <= v < until``.

    ``check`` returns what the node has that the parser refuses (a noun phrase, e.g. "ellipsis in
    equation '...id,...jd->...ij'") or None. ``until`` is the first version that takes it (named in
    the message); None: no known version does.
    """

    op: str
    check: Callable[[NodeView], str | None]
    since: str | None = None
    until: str | None = None

    def applies_to(self, version: str) -> bool:
        v = version_key(version)
        return ((self.since is None or version_key(self.since) <= v)
                and (self.until is None or v < version_key(self.until)))

    def message(self, node: NodeView, what: str, support: ParserSupport) -> str:
        later = f" ({self.until}+ takes it)" if self.until else ""
        return f"{node.op_type} {node.name}: {what} is not supported by the {support.name} ONNX parser{later}"


def _input(node: NodeView, i: int) -> str:
    return node.inputs[i] if len(node.inputs) > i else ""


def _needs_constant(index: int, what: str) -> Callable[[NodeView], str | None]:
    """Input ``index`` (when present) must be an initializer / Constant output."""
    def check(node: NodeView) -> str | None:
        t = _input(node, index)
        if t and not node.is_constant(t):
            return f"`{what}` input '{t}' computed in the graph (not an initializer)"
        return None
    check.__name__ = f"constant_{what}"
    return check


# Einsum ---------------------------------------------------------------------------------------

def _einsum_terms(node: NodeView) -> tuple[str, list[str]]:
    eq = str(node.attrs.get("equation", "")).replace(" ", "")
    return eq, eq.partition("->")[0].split(",")


def einsum_ellipsis(node: NodeView) -> str | None:
    eq, _ = _einsum_terms(node)
    return f"ellipsis in equation '{eq}'" if "..." in eq else None


def einsum_diagonal(node: NodeView) -> str | None:
    eq, terms = _einsum_terms(node)
    for i, term in enumerate(terms):
        letters = term.replace("...", "")
        repeated = sorted({c for c in letters if letters.count(c) > 1})
        if repeated:
            return f"diagonal (index '{repeated[0]}' repeated in input {i} '{term}') in equation '{eq}'"
    return None


def einsum_broadcasting(node: NodeView) -> str | None:
    """An index whose static size is 1 in one input and larger in another (explicit subscripts only;
    ellipsis equations are already reported by einsum_ellipsis)."""
    eq, terms = _einsum_terms(node)
    sizes: dict[str, set[int]] = {}
    for term, tensor in zip(terms, node.inputs):
        shape = node.shape(tensor) if tensor else None
        if "..." in term or shape is None or len(shape) != len(term):
            continue
        for c, d in zip(term, shape):
            if isinstance(d, int):
                sizes.setdefault(c, set()).add(d)
    for c in sorted(sizes):
        if len(sizes[c]) > 1 and 1 in sizes[c]:
            return (f"broadcasting between inputs (index '{c}' has sizes "
                    f"{', '.join(map(str, sorted(sizes[c])))}) in equation '{eq}'")
    return None


# Squeeze / Resize / LayerNormalization / GridSample / TopK / Pow / Q-DQ / Attention / RoPE -------

def squeeze_omitted_axes(node: NodeView) -> str | None:
    if "axes" in node.attrs or _input(node, 1):
        return None
    return "no `axes` (squeeze every size-1 axis)"


_RESIZE_MODES = frozenset({"nearest", "linear", "cubic"})  # cubic: parser source, see _RESIZE_CUBIC
_RESIZE_COORD = frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                           "align_corners"})
_RESIZE_NEAREST = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})


def resize_modes(node: NodeView) -> str | None:
    for attr, allowed, default in (("mode", _RESIZE_MODES, "nearest"),
                                   ("coordinate_transformation_mode", _RESIZE_COORD, "half_pixel"),
                                   ("nearest_mode", _RESIZE_NEAREST, "round_prefer_floor")):
        value = str(node.attrs.get(attr, default))
        if value not in allowed:
            return f"{attr}='{value}'"
    return None


def resize_antialias(node: NodeView) -> str | None:
    return "antialias=1" if int(node.attrs.get("antialias", 0)) else None


def resize_aspect_policy(node: NodeView) -> str | None:
    policy = str(node.attrs.get("keep_aspect_ratio_policy", "stretch"))
    return f"keep_aspect_ratio_policy='{policy}'" if policy != "stretch" else None


def resize_axes(node: NodeView) -> str | None:
    """With `scales` given, `axes` must be 0..rank-1 in order."""
    axes = node.attrs.get("axes")
    if axes is None or not _input(node, 2):
        return None
    shape = node.shape(_input(node, 0))
    rank = len(shape) if shape is not None else len(axes)
    if list(axes) != list(range(rank)):
        return f"axes={list(axes)} with `scales` (must be the iota 0..{rank - 1})"
    return None


def layernorm_extra_outputs(node: NodeView) -> str | None:
    extra = [o for o in node.outputs[1:] if o]
    return f"outputs besides `Y` ({', '.join(repr(o) for o in extra)})" if extra else None


def gridsample_rank(node: NodeView) -> str | None:
    shape = node.shape(_input(node, 0))
    if shape is not None and len(shape) != 4:
        return f"a {len(shape)}D input (must be 4D)"
    return None


def topk_sorted(node: NodeView) -> str | None:
    return "sorted=0" if int(node.attrs.get("sorted", 1)) != 1 else None


def topk_k_limit(node: NodeView) -> str | None:
    k = node.constant(_input(node, 1)) if _input(node, 1) else None
    if k and int(k[0]) >= 3840:
        return f"K={int(k[0])} (must be less than 3840)"
    return None


_INT_DTYPES = frozenset({"INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64"})


def pow_integer(node: NodeView) -> str | None:
    for role, t in (("base", _input(node, 0)), ("exponent", _input(node, 1))):
        dt = node.dtype(t) if t else None
        if dt in _INT_DTYPES:
            return f"an integer {role} ({dt} '{t}')"
    return None


def _zero_point_zero(what: str) -> Callable[[NodeView], str | None]:
    def check(node: NodeView) -> str | None:
        zp = _input(node, 2)
        values = node.constant(zp) if zp else None
        if values and any(float(v) != 0 for v in values):
            return f"a non-zero `{what}` ('{zp}', asymmetric quantization)"
        return None
    check.__name__ = f"zero_point_{what}"
    return check


def quantize_three_inputs(node: NodeView) -> str | None:
    return None if _input(node, 2) else "no `y_zero_point` input (8.5 needs exactly 3 inputs)"


def _int8_zero_point(node: NodeView) -> str | None:
    zp = _input(node, 2)
    dt = node.dtype(zp) if zp else None
    return f"a {dt} zero point '{zp}' (INT8 only)" if dt not in (None, "INT8") else None


def attention_unsupported_io(node: NodeView) -> str | None:
    for i, role in ((4, "past_key"), (5, "past_value"), (6, "nonpad_kv_seqlen")):
        if _input(node, i):
            return f"a `{role}` input"
    for i, role in ((1, "present_key"), (2, "present_value"), (3, "qk_matmul_output")):
        if len(node.outputs) > i and node.outputs[i]:
            return f"a `{role}` output"
    if int(node.attrs.get("qk_matmul_output_mode", 0)):
        return f"qk_matmul_output_mode={int(node.attrs['qk_matmul_output_mode'])}"
    if float(node.attrs.get("softcap", 0.0)):
        return f"softcap={node.attrs['softcap']}"
    return None


def attention_rank(node: NodeView) -> str | None:
    for i, role in ((0, "Q"), (1, "K"), (2, "V"), (3, "attn_mask")):
        t = _input(node, i)
        shape = node.shape(t) if t else None
        if shape is not None and len(shape) != 4:
            return f"a {len(shape)}D `{role}` input (must be 4D)"
    return None


def rotary_position_ids(node: NodeView) -> str | None:
    t = _input(node, 3)
    dt = node.dtype(t) if t else None
    return f"{dt} `position_ids` '{t}' (must be INT64)" if dt not in (None, "INT64") else None


# op -> the restrictions, each with the versions the notes above give for it.
RESTRICTIONS: tuple[Restriction, ...] = (
    # 8.5: "Ellipsis and diagonal operations are not supported. Broadcasting between inputs is not
    # supported"; parser changelog 10.12: "Added support for ellipses, diagonal, and broadcasting".
    Restriction("Einsum", einsum_ellipsis, until="10.12"),
    Restriction("Einsum", einsum_diagonal, until="10.12"),
    Restriction("Einsum", einsum_broadcasting, until="10.12"),
    Restriction("CumSum", _needs_constant(1, "axis"), until="10.8"),  # 10.16: build-time constant
    Restriction("Slice", _needs_constant(3, "axes"), until="10.3"),
    Restriction("Squeeze", _needs_constant(1, "axes"), until="10.7"),
    Restriction("Squeeze", squeeze_omitted_axes, until="11.5"),
    Restriction("Unsqueeze", _needs_constant(1, "axes"), until="10.7"),
    Restriction("ReduceMean", _needs_constant(1, "axes")),  # opset >= 18 input form; every table
    Restriction("Pad", _needs_constant(3, "axes"), since="10.0", until="10.4"),  # opset 18 > 8.5's max
    Restriction("Resize", resize_modes),
    Restriction("Resize", resize_antialias, since="10.0"),  # opset-18 attributes (8.5 stops at 17)
    Restriction("Resize", resize_aspect_policy, since="10.0"),
    Restriction("Resize", resize_axes, since="10.0"),
    Restriction("LayerNormalization", layernorm_extra_outputs, since="10.0"),  # 8.5: no importer
    Restriction("GridSample", gridsample_rank, until="11.2"),  # 11.2 release notes: 5D GridSample
    Restriction("TopK", _needs_constant(1, "K"), until="10.1"),  # the 10.1 table drops it
    Restriction("TopK", topk_sorted, since="10.0"),
    Restriction("TopK", topk_k_limit, since="10.0"),
    Restriction("Pow", pow_integer, until="10.8"),
    Restriction("QuantizeLinear", _zero_point_zero("y_zero_point")),
    Restriction("QuantizeLinear", quantize_three_inputs, until="10.0"),
    Restriction("QuantizeLinear", _int8_zero_point, until="10.0"),  # 8.5: UINT8 rejected
    Restriction("DequantizeLinear", _zero_point_zero("x_zero_point")),
    Restriction("Attention", attention_unsupported_io),
    Restriction("Attention", attention_rank),
    Restriction("RotaryEmbedding", rotary_position_ids),
)


def restrictions_for(target: str) -> dict[str, tuple[Restriction, ...]]:
    """op -> the restrictions that apply to this target's parser version (a check derives it once per
    target and hands it to ``node_violations`` for every node)."""
    version = parser_support(target).version
    out: dict[str, list[Restriction]] = {}
    for r in RESTRICTIONS:
        if r.applies_to(version):
            out.setdefault(r.op, []).append(r)
    return {op: tuple(rs) for op, rs in out.items()}


def node_violations(node: NodeView, table: dict[str, tuple[Restriction, ...]], support: ParserSupport) -> list[str]:
    """Finding messages for one node against one target's ``restrictions_for`` table (empty when the
    parser takes the node as it is)."""
    msgs = []
    for r in table.get(node.op_type, ()):
        what = r.check(node)
        if what:
            msgs.append(r.message(node, what, support))
    return msgs
