"""Networks built from eca_ref's own layers: the tiny CIFAR ECA-ResNet."""
from eca_ref.models.resnet import (BlockSpec, ResNetConfig, attention_gates, block_specs, buffer_shapes,
                                   count_parameters, decay_keys, init_resnet, param_shapes, resnet_backward,
                                   resnet_forward)

__all__ = ["ResNetConfig", "BlockSpec", "block_specs", "init_resnet", "resnet_forward", "resnet_backward",
           "decay_keys", "count_parameters", "attention_gates", "param_shapes", "buffer_shapes"]
