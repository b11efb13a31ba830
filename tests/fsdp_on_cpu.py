"""`python -m torch.distributed.run --nproc_per_node=2 tests/fsdp_on_cpu.py <train.py arguments>`: the app with FSDP2
on CPU over gloo, for the tests only.

torch's FSDP2 runs on CPU, but accelerate turns FSDP on only for accelerators (on CPU it quietly trains DDP instead),
and sparsetune refuses hardware.fsdp off CUDA for that reason. Here both are widened: accelerate's state says FSDP
whenever the Trainer hands it an FSDP plugin, and hardware.device=cpu is allowed with hardware.fsdp. Everything
else (the Trainer's FSDP2 preparation, sharded training, checkpoints, the gathering in sparsetune/fsdp_params.py)
is the code a GPU run takes.
"""
import sys
from pathlib import Path

import accelerate.state as accelerate_state
from accelerate.utils import DistributedType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsetune import cli, fsdp_config  # noqa: E402

_init = accelerate_state.AcceleratorState.__init__


def _fsdp_on_cpu(self, *a, fsdp_plugin=None, **kw):
    _init(self, *a, fsdp_plugin=fsdp_plugin, **kw)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        # a later AcceleratorState() copies PartialState's fields: keep FSDP there too
        accelerate_state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP


if __name__ == "__main__":
    accelerate_state.AcceleratorState.__init__ = _fsdp_on_cpu
    fsdp_config.DEVICES = ("cuda", "cpu")
    cli.app()
