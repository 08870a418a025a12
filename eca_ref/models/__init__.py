"""Networks built from eca_ref's own layers: the tiny CIFAR ECA-ResNet."""
from eca_ref.models.resnet import (REFERENCE_LAYERS, BlockCache, Layers, ResNetCache, attention_gates, block_backward,
                                   block_forward, resnet_backward, resnet_forward)
from eca_ref.models.resnet_spec import (BlockSpec, ResNetConfig, block_specs, buffer_shapes, count_parameters,
                                        decay_keys, init_resnet, param_shapes)

__all__ = ["ResNetConfig", "BlockSpec", "block_specs", "init_resnet", "resnet_forward", "resnet_backward",
           "block_forward", "block_backward", "Layers", "REFERENCE_LAYERS", "BlockCache", "ResNetCache",
           "decay_keys", "count_parameters", "attention_gates", "param_shapes", "buffer_shapes"]
