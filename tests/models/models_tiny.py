"""Tiny random-init model entries of every supported family, shared by the model-layer tests."""

from runner.schema import ModelSpec

VIT_KW = dict(img_size=32, patch_size=8, depth=3, embed_dim=32, num_heads=2)


def timm_spec(name: str, num_classes: int = 10, **kwargs) -> ModelSpec:
    return ModelSpec(source="timm", name=name, pretrained=False, num_classes=num_classes,
                     kwargs={**VIT_KW, **kwargs})


VIT = timm_spec("vit_tiny_patch16_224")
DEIT = timm_spec("deit_tiny_distilled_patch16_224")
VIT_REG = timm_spec("vit_small_patch14_reg4_dinov2")  # CLS + 4 registers, LayerScale
VIT_GAP = timm_spec("vit_medium_patch16_reg4_gap_256")  # no CLS, 4 registers, average pool

SWIN = ModelSpec(source="timm", name="swin_tiny_patch4_window7_224", pretrained=False,
                 num_classes=5, kwargs=dict(img_size=32, patch_size=2, window_size=4,
                                            embed_dim=16, depths=(2, 1), num_heads=(1, 2)))
PIT = ModelSpec(source="timm", name="pit_ti_distilled_224", pretrained=False, num_classes=5,
                kwargs=dict(img_size=32, patch_size=8, stride=4, base_dims=(16, 16),
                            depth=(1, 1), heads=(1, 2)))
CONVIT = ModelSpec(source="timm", name="convit_tiny", pretrained=False, num_classes=5,
                   kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2,
                               local_up_to_layer=2))
COAT = ModelSpec(source="timm", name="coat_lite_tiny", pretrained=False, num_classes=5,
                 kwargs=dict(img_size=32, embed_dims=(32, 32, 32, 32),
                             serial_depths=(1, 1, 1, 1), num_heads=8))
TWINS = ModelSpec(source="timm", name="twins_svt_small", pretrained=False, num_classes=5,
                  kwargs=dict(img_size=32, embed_dims=(16, 32), depths=(1, 1), num_heads=(1, 2),
                              sr_ratios=(2, 1), wss=(2, 2), patch_size=4))
RESNET = ModelSpec(source="timm", name="resnet18", pretrained=False, num_classes=5,
                   )

OPEN_CLIP_KW = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=2, width=32, patch_size=8, head_width=16),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
)
CLIP = ModelSpec(source="open_clip", name="ViT-B-32-quickgelu", pretrained=False,
                 kwargs=OPEN_CLIP_KW)
