"""`graphc.nn.utils`: gradient clipping, parameter/vector conversion and (`rnn`) packed sequences."""
from graphc.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_
from graphc.nn.utils.convert_parameters import parameters_to_vector, vector_to_parameters
from graphc.nn.utils import rnn

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters", "rnn"]
