"""`graphc.nn`: PyTorch's neural-network building blocks, composed from graphc tensor ops."""
from graphc.nn.parameter import Parameter
from graphc.nn.module import Module
from graphc.nn.container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from graphc.nn.linear import Bilinear, Identity, Linear
from graphc.nn.conv import Conv2d
from graphc.nn.pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
from graphc.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from graphc.nn.dropout import Dropout
from graphc.nn.sparse import Embedding
from graphc.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from graphc.nn.flatten import Flatten, Unflatten
from graphc.nn.activation import (ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU, ReLU6, Sigmoid, SiLU,
                                  Softmax, Softplus, Tanh)
from graphc.nn.loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss,
                            MSELoss, NLLLoss, SmoothL1Loss)
from graphc.nn import functional, init, utils

__all__ = [
    "Parameter", "Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
    "Identity", "Linear", "Bilinear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Dropout", "Embedding", "RNNBase", "RNN",
    "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "Flatten",
    "Unflatten", "ReLU", "ReLU6", "LeakyReLU", "ELU", "Hardtanh", "Sigmoid", "Tanh", "SiLU", "Softplus",
    "GELU", "Softmax", "LogSoftmax", "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "NLLLoss",
    "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss", "functional", "init", "utils",
]
