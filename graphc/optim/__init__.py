"""`graphc.optim`: optimizers whose step is tensor ops + in-place writes (traceable), and schedulers."""
from graphc.optim.optimizer import Optimizer
from graphc.optim.sgd import SGD
from graphc.optim.adam import Adam, AdamW
from graphc.optim.rmsprop import RMSprop
from graphc.optim import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler"]
