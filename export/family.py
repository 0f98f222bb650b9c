"""Per-family export configuration (in the spirit of optimum's exporter configs).

What differs between families at export time lives here, not in if-branches of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitdeploy.core.precision import QuantHints

# Ops a deploy-ready zoo graph must not contain after simplification: they are what the
# deploy forms exist to remove (Einsum, Unfold chains, randperm, GatherND/TopK permutations,
# control flow), so finding one means a deploy rewrite regressed.
DEPLOY_FORBIDDEN_OPS = frozenset({
    "Einsum", "Col2Im", "GatherND", "ScatterND", "TopK", "NonZero", "Loop", "If", "Scan",
    "RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial",
})


@dataclass(frozen=True)
class FamilyExportConfig:
    family: str
    preferred_exporter: str = "legacy"
    forbidden_ops: frozenset[str] = DEPLOY_FORBIDDEN_OPS
    why: str = ""
    # Written into the manifest; `vitdeploy quantize` applies them unless --no-family-hints.
    quantization_hints: QuantHints = field(default_factory=QuantHints)
    # The factory argument that sizes the model's token grid (position embeddings, positional
    # attention, soft-split grids) for another --input-size; the checkpoint filter resamples.
    size_kwarg: str = "img_size"


_LEGACY_WHY = ("legacy exporter first: it writes the requested opset 17 directly and is 3-10x faster; "
               "after simplification its graph matches dynamo's")

FAMILY_CONFIGS: dict[str, FamilyExportConfig] = {
    "vit": FamilyExportConfig("vit", why=_LEGACY_WHY),
    "t2t_vit": FamilyExportConfig(
        "t2t_vit", why=_LEGACY_WHY + "; dynamo asked for 17 writes 18 on T2T-ViT (no Pad adapter)",
        quantization_hints=QuantHints(
            float_kernel_attention=True,
            why="the Performer attention of the T2T module multiplies exp random features of wide range; "
                "in INT8 it cost t2t_vit tiny (digits) 1.4 points top-1, in float 0.0",
        )),
    "convit": FamilyExportConfig(
        "convit", why=_LEGACY_WHY + "; dynamo also corrupts the live ConViT (always exported from a copy)",
        quantization_hints=QuantHints(
            float_mixed_attention=True,
            why="GPSA blends content attention with sharply peaked positional attention; one INT8 scale "
                "cannot hold both (convit_tiny attn@V in INT8: cosine 0.980, in float: 0.998)",
        )),
    "sret": FamilyExportConfig("sret", why=_LEGACY_WHY + "; dynamo writes the permutation as GatherND/TopK",
                               size_kwarg="image_size"),
    "ceit": FamilyExportConfig(
        "ceit", why=_LEGACY_WHY,
        quantization_hints=QuantHints(
            float_input_layer=True,
            why="the Image-to-Tokens stem conv (7x7 on the raw image) loses most in INT8 "
                "(ceit_tiny: cosine 0.955 with it quantized, 0.999 with it in float; 2% of the MACs)",
        )),
}

USER_MODEL_CONFIG = FamilyExportConfig("user", forbidden_ops=frozenset(), why=_LEGACY_WHY)


def family_config(family: str | None) -> FamilyExportConfig:
    if family is None:
        return USER_MODEL_CONFIG
    return FAMILY_CONFIGS.get(family, FamilyExportConfig(family, why=_LEGACY_WHY))
