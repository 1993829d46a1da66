import torch

# Tests run tiny models; more threads than cores only adds contention on a 2-core CI box.
torch.set_num_threads(min(2, torch.get_num_threads()))
